"""The rig: emulated hardware for tests, the demo and configs that ask for it, apart from the
runtime (capture/, sms/, app.py and the rest never import it).

    attach.py    attach(config): the emulated devices a config asks for ([serial.emulate],
                 bus = "emulated", [sms] emulate = true), handed to app.run_appliance as its
                 `devices`; run_appliance(config, ...) does both; check(config) refuses what
                 attach would
    mcu/         EmulatedMcu: the vibration MCU on a pty (signal, faults, firmware behaviour)
    i2c.py       EmulatedI2cBus with an emulated TMP117 and INA219 over a plant model
    modem/       EmulatedModem: a SIM800/SIM7600 on a pty
    pty.py       the pseudo-terminal the MCU and the modem appear on
    demo.py      the demo's config: two assets, faults on one, SMS through the emulated modem
"""

from appliance.rig.attach import Rig, attach, check, run_appliance

__all__ = ["Rig", "attach", "check", "run_appliance"]
