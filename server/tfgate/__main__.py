from tfgate.cli import main

raise SystemExit(main())
