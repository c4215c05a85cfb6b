from mi_catalog.cli import main

raise SystemExit(main())
