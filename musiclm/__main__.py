import sys

from musiclm.cli import main

sys.exit(main())
