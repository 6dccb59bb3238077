import sys

from bench.promql_compliance.run import main

sys.exit(main())
