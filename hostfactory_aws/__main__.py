import sys

from hostfactory_aws.admin.cli import main

sys.exit(main())
