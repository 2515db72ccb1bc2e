import sys

from vitc.cli import main

sys.exit(main())
