from clickrouter.cli import main

raise SystemExit(main())
