import sys

from vitc.compiler.cli import main

sys.exit(main())
