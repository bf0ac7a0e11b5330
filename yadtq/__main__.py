import sys

from yadtq.cli import main

sys.exit(main())
