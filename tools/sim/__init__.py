"""The Anshim fleet simulator: real firmware, a LoRa channel model, real gateways.

Every simulated bell and light runs its real firmware class (`firmware/bell/bell.py`,
`firmware/light/light.py`) and the firmware's radio adapter (KR920 listen-before-talk,
receive windows) on a host HAL; their frames cross a LoRa channel model (time on air,
path loss, collisions with capture, half duplex, receiver sensitivity) and reach real
`gateway.service.Gateway` instances, one per community centre, each with its own journal,
through the sim transport or (optionally) the bridge firmware over a pty. Gateways may
publish to a real MQTT broker. Everything runs on asyncio: in real time on a normal loop
(the demo), or faster than real time on `vloop.VirtualTimeLoop`.

Modules: `vloop` (the virtual clock), `channel` (the radio model and its constants),
`scenario` (files, the city generator), `places` (Korean place fields, Seongbuk-gu),
`devices` (the HAL), `gateways`, `fleet` (`Simulation`), `report` (figures, text, plots),
`sweep` (fleet size against the goals), `bench` (`sim_speed` for ``anshim bench``).

**API for a live view** (a demo on a normal asyncio loop, in real time)::

    from tools.sim import Operator, SimEvent, Simulation, load_scenario

    sim = Simulation(
        load_scenario("seongbuk"),        # or scenario.city(n, m), or a file
        seed=1,
        data_dir=None,                    # None: a temporary folder (RAM), removed after
        mqtt_url=None,                    # "mqtt://127.0.0.1:1883": gateways publish there,
                                          #   and the operator acknowledges over MQTT
        operator=Operator(ack_after_s=(3, 8), resolve_after_s=(20, 40)),  # None: nobody
        stagger_s=30,                     # devices wake within this many seconds
        warm=True,                        # devices as if long running (no power-on burst)
        record_events=False,              # True: also keep every event in sim.events
        registration="home",              # at every gateway that hears it, answered by the
                                          #   best one ("covering": all answer; "best":
                                          #   registered at one gateway only)
        random_presses=0,                 # presses at random idle bells ...
        press_window=None,                # ... between these seconds (default 60..3600)
    )
    sim.subscribe(on_event)               # on_event(SimEvent) for every event below
    async with sim.running():             # gateways up, fleet started
        sim.press("0a000104")             # id, hex id or label; returns a PressRecord
        await asyncio.sleep(60)           # real seconds on a normal loop
        sim.gateways[0].service           # the real Gateway (.core: the pipeline)
    print(sim.report())                   # figures as data; report.format_text for text

`SimEvent` (``t`` seconds since start, ``at`` simulated wall clock, ``kind``, ``source``
= a device's hex id or a gateway id, ``data``). Kinds:

==============  =============================================================================
press           a resident pressed a bell (``hold_s``, ``label``)
incident        the bell opened an incident for a press: its ``event_id`` (the MQTT
                alarm's id) and ``pressed_t`` (the press, seconds since start)
feedback        the bell's LED/buzzer pattern changed (``pattern``: IDLE, SENDING,
                NOT_THROUGH, DELIVERED, ACKNOWLEDGED, RESOLVED; ``state``)
bell_state      the bell's own alarm state changed (``state``: pending, delivered,
                acknowledged, idle)
missed_press    the bell never saw a press (released while its loop was busy)
tx / rx         a frame went on the air (``frame`` type, ``toa_ms``; from a gateway: ``to``)
                / was received (``frame``, ``src``, ``rssi``, ``snr``)
alarm           a gateway's alarm state (``event_id``, ``state``: raised, delivered,
                acknowledged, resolved, ``device``)
operator        the simulated operator acknowledged or resolved (``event_id``, ``state``)
strobe_start    a light starts strobing (``seconds``) / strobe_stop: it stopped
online/offline  a gateway marked a device online or offline (``device``, ``kind``)
light_link      a light's own view of its gateway changed (``online``)
==============  =============================================================================

``Simulation.devices`` maps device ids to `devices.SimBell` / `devices.SimLight` (their
``pattern``, ``state``, ``level``, ``strobe_until``, ``spec`` with the place fields);
``Simulation.presses`` lists every `devices.PressRecord` with its timings.

**Faster than real time**: ``vloop.run(sim.run(86400))`` simulates a day as fast as the
CPU allows; `report.format_text(sim.report())` prints the figures. The command line is
``anshim sim`` (tools/anshim/sim.py).
"""

from tools.sim.channel import PathLoss, RadioSettings
from tools.sim.fleet import Operator, SimEvent, Simulation
from tools.sim.scenario import Scenario, ScenarioError, city, load_scenario, parse_scenario

__all__ = [
    "Operator",
    "PathLoss",
    "RadioSettings",
    "Scenario",
    "ScenarioError",
    "SimEvent",
    "Simulation",
    "city",
    "load_scenario",
    "parse_scenario",
]
