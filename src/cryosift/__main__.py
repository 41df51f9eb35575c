import sys

from cryosift.cli import main

sys.exit(main())
