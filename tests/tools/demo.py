"""demo.py: the end-to-end demo behind ./demo.sh, built on the test
harness (tests/integration/mgtest.py) so it starts and stops the same real
peers the tests use, each by PID, in a temp dir."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ["MG_SRCDIR"], "tests", "integration"))
import mgtest  # noqa: E402


def say(text):
    print("\n\033[1m== %s\033[0m" % text, flush=True)


def main():
    tmp = mgtest.TempDir(prefix="mailgate-demo-")
    pki = mgtest.pki_dir()
    started = []
    try:
        say("Upstream: Postfix's smtp-sink on 127.0.0.1 (stands in for your Postfix)")
        sink = mgtest.SmtpSink(tmp)
        started.append(sink)
        print("smtp-sink listening on 127.0.0.1:%d" % sink.port)

        smtps = mgtest.free_port()
        conf = mgtest.smtpd_conf(pki, sink.port, mgtest.listener("smtps", smtps, "implicit"))
        conf = conf.replace('log_level = "debug"', 'log_level = "info"')
        say("mailgate-smtpd with this configuration")
        print(conf)
        gw = mgtest.Gateway(tmp, conf, [smtps])
        started.append(gw)
        print("mailgate-smtpd listening on 127.0.0.1:%d (SMTPS)" % smtps)

        say("swaks submits a message over SMTPS, verifying the certificate against the demo CA")
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % smtps, "--tlsc", "--tls-verify",
                            "--tls-ca-path", pki + "/ca.pem", "--tls-sni", "localhost",
                            "--ehlo", "client.demo.example", "-f", "sender@demo.example",
                            "-t", "user@example.org", "--header", "Subject: mailgate demo",
                            "--body", "Hello through mailgate!"],
                           capture_output=True, text=True, timeout=60)
        print(r.stdout)
        if r.returncode != 0:
            print(r.stderr)
            raise SystemExit("swaks failed")

        say("What the upstream received (smtp-sink's dump)")
        msgs = sink.wait_messages(1)
        print(msgs[0].raw.decode("utf-8", "replace"))

        say("mailgate's log")
        gw.stop()
        started.remove(gw)
        print(gw.log())
        say("Done: the message went client -> SMTPS -> mailgate -> upstream")
    finally:
        for p in reversed(started):
            p.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
