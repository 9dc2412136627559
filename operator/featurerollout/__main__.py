from featurerollout.commands.cli import main

raise SystemExit(main())
