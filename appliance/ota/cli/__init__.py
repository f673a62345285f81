"""`appliance model ...`: over-the-air models from the command line.

On the data team's workstation: `keygen` (the signing key pair), `sign` (a trained bundle),
`verify` (every check a gateway makes before its canary) and `publish` (a bundle or a rollback,
over MQTT to one gateway, waiting for its answer). On the gateway: `rollback` (through the
running appliance's inbox, or straight in the model library when it is stopped).

Exit codes: 0 done or accepted, 1 refused (the reason is printed), 2 error (bad arguments or
files, "error: ..."), 3 no answer in time."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.ota.cli.publish import add_publish
from appliance.ota.cli.rollback import add_rollback
from appliance.ota.cli.sign import add_keygen, add_sign
from appliance.ota.cli.verify import add_verify


def add_model_commands(commands: Any) -> None:
    model = commands.add_parser(
        "model",
        help="over-the-air models: keygen, sign, verify, publish, rollback",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = model.add_subparsers(required=True, metavar="ACTION")
    add_keygen(actions)
    add_sign(actions)
    add_verify(actions)
    add_publish(actions)
    add_rollback(actions)
