"""The PROXY protocol with real peers (DESIGN.md §3): HAProxy in front of
the gateways (send-proxy and send-proxy-v2) - the declared client address
is the one logged, forwarded (XCLIENT, Received) and limited; senders
outside trusted_proxies and malformed headers are closed silently. Behind
the gateways, Postfix (smtpd_upstream_proxy_protocol = haproxy) and Dovecot
(haproxy = yes) receive v1/v2 headers from the gateway and log the real
client address; Dovecot sees the TLS TLV and the verified client CN."""
import os
import socket
import time

from mgtest import (GatewayTest, Imap, Proc, Smtp, client_context, free_port, imapd_conf, listener,
                    main, message, need, send_message, smtpd_conf, wait_port)


def closed_silently(s, timeout=5):
    """True when the peer closed (FIN or RST) without sending a byte."""
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


class Haproxy:
    def __init__(self, tmp, front, back, send):
        need("haproxy")
        cfg = tmp.file("haproxy-%d.cfg" % front, """global
    log stderr local0
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 127.0.0.1:{front}
    default_backend b
backend b
    server gw 127.0.0.1:{back} {send}
""".format(front=front, back=back, send=send))
        self.proc = Proc(["haproxy", "-db", "-f", cfg], os.path.join(tmp.path, "haproxy-%d.log" % front))
        if not wait_port(front, proc=self.proc.p):
            raise RuntimeError("haproxy did not start: " + self.proc.output())

    def stop(self):
        self.proc.stop()


class ProxyIn(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.sink()
        self.p_gw = free_port()
        self.gw = self.gateway(smtpd_conf(self.pki, self.up.port,
                                          listener("behind-lb", self.p_gw, "starttls",
                                                   "proxy_protocol = true\n  require_tls = false\n"
                                                   'trusted_proxies = "127.0.0.1"\n  max_per_ip = 1')),
                               [self.p_gw])

    def via(self, send):
        front = free_port()
        self.track(Haproxy(self.tmp, front, self.p_gw, send))
        return front

    def test_v1_and_v2_declared_client(self):
        for send in ("send-proxy", "send-proxy-v2"):
            front = self.via(send)
            c = Smtp(front, source="127.0.0.9")
            self.assertEqual(c.reply()[0], 220, send)
            c.expect("EHLO lb.test", 250)
            code, _ = send_message(c, message("via " + send))
            self.assertEqual(code, 250)
            c.expect("QUIT", 221)
            self.gw.wait_log(r"listener=behind-lb client=127\.0\.0\.9:\d+ helo=lb\.test msgs=1")
        msgs = self.up.wait_messages(2)
        for m in msgs:
            self.assertIn(b"(unknown [127.0.0.9])", m.message.split(b"\n")[0])

    def test_limits_apply_to_declared_client(self):
        front = self.via("send-proxy-v2")
        a = Smtp(front, source="127.0.0.9")
        self.assertEqual(a.reply()[0], 220)
        b = Smtp(front, source="127.0.0.9")      # max_per_ip = 1 for 127.0.0.9
        self.assertEqual(b.reply()[1], ["421 4.7.0 Too many connections"])
        c = Smtp(front, source="127.0.0.10")     # another client behind the same proxy
        self.assertEqual(c.reply()[0], 220)

    def test_untrusted_or_bad_header_closed_silently(self):
        s = socket.create_connection(("127.0.0.1", self.p_gw), source_address=("127.0.0.2", 0))
        s.sendall(b"PROXY TCP4 6.6.6.6 127.0.0.1 1 2\r\nEHLO x\r\n")
        self.assertTrue(closed_silently(s))      # not in trusted_proxies
        s = socket.create_connection(("127.0.0.1", self.p_gw))
        s.sendall(b"EHLO no-header.test\r\n")
        self.assertTrue(closed_silently(s))      # no header
        self.gw.wait_log(r"sender not in trusted_proxies")
        self.gw.wait_log(r"malformed header")

    def test_header_timeout(self):
        self.gw.stop()
        self.procs.remove(self.gw)
        self.gw = self.gateway(smtpd_conf(self.pki, self.up.port,
                                          listener("behind-lb", self.p_gw, "implicit", "proxy_protocol = true"),
                                          extra="timeout_handshake = 1"), [self.p_gw])
        s = socket.create_connection(("127.0.0.1", self.p_gw))
        s.sendall(b"PROXY TCP4 1.2.3.4")     # never finished
        t0 = time.time()
        self.assertTrue(closed_silently(s))
        self.assertLess(time.time() - t0, 4)
        # Implicit TLS behind a v1 header: the ClientHello after it is intact.
        raw = socket.create_connection(("127.0.0.1", self.p_gw))
        raw.sendall(b"PROXY TCP4 192.0.2.44 127.0.0.1 5555 465\r\n")
        c = client_context().wrap_socket(raw, server_hostname="localhost")
        self.assertEqual(c.recv(100)[:4], b"220 ")
        c.close()
        self.gw.wait_log(r"listener=behind-lb client=192\.0\.2\.44:5555 tls=TLS1\.3")


class ProxyOut(GatewayTest):
    def test_postfix_behind_v1_and_v2(self):
        for version in ("v1", "v2"):
            pf_port = free_port()
            pf = self.postfix(pf_port, main_extra="smtpd_upstream_proxy_protocol = haproxy")
            p = free_port()
            self.gateway(smtpd_conf(self.pki, pf_port, listener("local", p, "none"),
                                    upstream_extra='xclient = false\n  proxy_protocol = "%s"' % version), [p])
            c = Smtp(p, source="127.0.0.11")
            c.reply()
            c.expect("EHLO pp.test", 250)
            code, lines = send_message(c, message("proxy " + version))
            self.assertEqual(code, 250, lines)
            pf.wait_log(r"client=localhost\[127\.0\.0\.11\]|client=unknown\[127\.0\.0\.11\]")

    def test_ipv6_client_on_ipv4_socket_keeps_its_address(self):
        """A header has one family: an IPv6 client declared by the load
        balancer on an IPv4 local address is passed on as TCP6 with the
        local address mapped, so Postfix still logs the IPv6 client."""
        for version in ("v1", "v2"):
            pf_port = free_port()
            pf = self.postfix(pf_port, main_extra="smtpd_upstream_proxy_protocol = haproxy\n"
                                                  "inet_protocols = all\n"
                                                  "mynetworks = 127.0.0.0/8 [2001:db8::]/32")
            p = free_port()
            self.gateway(smtpd_conf(self.pki, pf_port,
                                    listener("behind-lb", p, "none",
                                             'proxy_protocol = true\n  trusted_proxies = "127.0.0.1"'),
                                    upstream_extra='xclient = false\n  proxy_protocol = "%s"' % version),
                         [p])
            c = Smtp(p)
            c.send(b"PROXY TCP6 2001:db8::44 ::ffff:127.0.0.1 5555 25\r\n")
            self.assertEqual(c.reply()[0], 220)
            c.expect("EHLO pp6.test", 250)
            code, lines = send_message(c, message("proxy6 " + version))
            self.assertEqual(code, 250, lines)
            pf.wait_log(r"client=unknown\[2001:db8::44\]")

    def test_dovecot_behind_v2_with_tls_tlvs(self):
        dc_port = free_port()
        dc = self.dovecot(imap_port=dc_port, users={"alice": "secret"},
                          extra="haproxy_trusted_networks = 127.0.0.0/8\n"
                                "service imap-login {\n  inet_listener imap {\n    haproxy = yes\n  }\n}\n")
        p = free_port()
        self.imap_gateway(imapd_conf(self.pki, dc_port, listener("imaps", p, "implicit"),
                                     upstream_extra='forward_id = false\n  proxy_protocol = "v2"'), [p])
        c = Imap(p, tls=True, source="127.0.0.12")
        c.line()
        self.assertRegex(c.cmd("a", "LOGIN alice secret")[-1], r"^a OK ")
        line = dc.wait_log(r"Login: user=<alice>.*").group(0)
        self.assertIn("rip=127.0.0.12", line)
        self.assertRegex(line, r"TLS|secured")


if __name__ == "__main__":
    main()
