from latbench.cli import main

raise SystemExit(main())
