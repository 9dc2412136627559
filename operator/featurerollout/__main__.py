from featurerollout.cli import main

raise SystemExit(main())
