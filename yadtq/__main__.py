import sys

from yadtq.cli.main import main

sys.exit(main())
