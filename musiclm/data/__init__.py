"""The music–text corpus engine: composer, score arranger, renderer, captioner and manifests."""
