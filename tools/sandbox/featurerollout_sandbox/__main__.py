"""`python -m featurerollout_sandbox`: the same as the `featurerollout-sandbox` command."""

import sys

from featurerollout_sandbox.command import main

sys.exit(main())
