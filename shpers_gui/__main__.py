from shpers_gui.app import main

raise SystemExit(main())
