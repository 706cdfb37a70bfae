import sys

from simmim_ray.cli import main

sys.exit(main())
