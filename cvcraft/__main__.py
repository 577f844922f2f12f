from cvcraft.cli import main

raise SystemExit(main())
