"""python -m petcd.utl: petcdutl."""

import sys

from petcd.utl.main import main

sys.exit(main())
