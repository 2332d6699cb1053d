import sys

from goodpoint_ros.cli import main

sys.exit(main())
