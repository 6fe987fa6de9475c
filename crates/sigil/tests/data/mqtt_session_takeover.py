"""Session-takeover attempt against a Mosquitto broker configured from deploy/mosquitto, with
paho-mqtt (PyPI) as the device client.

Device X, holding its own valid certificate, connects with device Y's client id and
clean_start=False, hoping to inherit Y's persistent session and receive Y's commands (and to
push Y off the broker). Prints one JSON object of observations; the Rust test judges them.

usage: mqtt_session_takeover.py PORT CONTROL_PORT DIR X Y COMMANDER_PASSWORD
DIR holds ca.pem and <device>.crt / <device>.key.
"""
import json
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

port, control_port, d, x, y, commander_password = sys.argv[1:7]
port, control_port = int(port), int(control_port)


class Device:
    def __init__(self, cert, client_id, user=None, password=None, tls_client_cert=True, p=port):
        self.messages = []
        self.connack = None
        self.suback = None
        self.disconnected = threading.Event()
        self.ready = threading.Event()
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
        if tls_client_cert:
            ctx.load_cert_chain(f"{d}/{cert}.crt", f"{d}/{cert}.key")
        c.tls_set_context(ctx)
        if user:
            c.username_pw_set(user, password)
        c.on_connect = self.on_connect
        c.on_message = lambda _c, _u, m: self.messages.append(m.topic)
        c.on_subscribe = self.on_subscribe
        c.on_disconnect = lambda *_a: self.disconnected.set()
        self.client = c
        self.port = p

    def on_connect(self, _c, _u, flags, reason, props):
        self.connack = {"reason": str(reason), "session_present": bool(flags.session_present),
                        "assigned": getattr(props, "AssignedClientIdentifier", None)}
        self.ready.set()

    def on_subscribe(self, _c, _u, _mid, codes, _props):
        self.suback = [c.value for c in codes]
        self.subscribed.set()

    def connect(self, clean_start=False):
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.disconnected.clear()
        self.ready.clear()
        self.client.connect("localhost", self.port, clean_start=clean_start, properties=props)
        self.client.loop_start()
        assert self.ready.wait(10), "no CONNACK"
        return self

    def subscribe(self, topic):
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(10), "no SUBACK"
        return self.suback

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


out = {}
commander = Device(None, "commander", "commander", commander_password, tls_client_cert=False,
                   p=control_port).connect(clean_start=True)


def command(name):
    info = commander.client.publish(f"devices/{y}/commands/{name}", name, qos=1)
    info.wait_for_publish(10)


# Y: a persistent session subscribed to its commands.
victim = Device(y, y).connect()
out["y_suback"] = victim.subscribe(f"devices/{y}/commands/#")
# X connects with Y's client id, asking to resume Y's session.
attacker = Device(x, y).connect()
out["x_connack"] = attacker.connack
command("first")
time.sleep(1.5)
out["y_received"] = list(victim.messages)
out["x_received"] = list(attacker.messages)
out["y_kicked"] = victim.disconnected.is_set()
out["x_own_subscribe_to_y"] = attacker.subscribe(f"devices/{y}/commands/#")
# Y goes away, keeping its session; a command is queued for it. X tries to resume it again.
victim.close()
attacker.close()
time.sleep(0.3)
command("queued")
attacker2 = Device(x, y).connect()
time.sleep(1.5)
out["x_resumed_session_present"] = attacker2.connack["session_present"]
out["x_received_queued"] = list(attacker2.messages)
attacker2.close()
# Y comes back and gets what was queued for it.
back = Device(y, y).connect()
time.sleep(1.5)
out["y_session_present"] = back.connack["session_present"]
out["y_received_queued"] = list(back.messages)
back.close()
commander.close()
print(json.dumps(out))
