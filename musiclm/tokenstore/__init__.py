"""Pre-tokenized corpora: the codec, semantic and MuLan tokens the three generation stages train on.

``musiclm tokenize`` (:mod:`musiclm.tokenstore.build`) runs the models once over corpus folders, sharded by
rank and resumable; :class:`TokenStore` reads the result.
"""

from musiclm.tokenstore.store import ClipTokens, StoreInfo, TokenStore, TokenStoreError

__all__ = ["ClipTokens", "StoreInfo", "TokenStore", "TokenStoreError"]
