"""`python -m receiver` is `appliance-receiver`."""

from receiver.cli import main

raise SystemExit(main())
