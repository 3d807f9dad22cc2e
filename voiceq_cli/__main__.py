import sys

from voiceq_cli import main

sys.exit(main())
