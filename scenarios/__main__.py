import sys

from scenarios.harness import main

sys.exit(main())
