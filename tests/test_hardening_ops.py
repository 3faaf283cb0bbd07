"""Hardening of operations: the page holds the inference key alone, a closed terminal stops
everything, TorchServe's whole process tree goes even when `torchserve --stop` fails, the run folder
is private, only bare archive names register, and phone mode's certificate, address and pass phrase.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import requests
from conftest import write_random_release
from test_serve_launcher import start_supervisor, until_ready

import settings
from frontend.access import PASS_PHRASE_VARIABLE
from ops.names import archive_name, model_name, release_version
from ops.release import versioned_archive
from serve.certificate import VALID_DAYS, Tls, ensure_certificate, make_ca, make_leaf, names_for
from serve.page import access_environment, announce, streamlit_command
from serve.processes import process_tree, stop_tree
from serve.torchserve import TorchServe, free_port

LAN = "192.0.2.7"  # TEST-NET-1: an address a certificate can name without it being this machine's


def private(path: Path) -> bool:
    return not stat.S_IMODE(path.stat().st_mode) & 0o077


def assert_all_gone(processes: list[psutil.Process]) -> None:
    _gone, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, [" ".join(process.cmdline()[:3]) for process in alive]


def test_closed_terminal_stops_page_torchserve_and_workers_and_the_page_holds_one_key(
        model_store, fixture_images, tmp_path):
    home, port = tmp_path / "serve", free_port()
    supervisor = start_supervisor(home, model_store, port)
    tree: list[psutil.Process] = []
    try:
        until_ready(supervisor)
        tree = process_tree(supervisor.pid)
        [page] = [process for process in tree if "streamlit" in " ".join(process.cmdline())]
        assert any("java" in process.name() for process in tree)

        # Item 7: the page is given a file with the inference key and nothing else.
        page_key_file = Path(page.environ()["SKIN_KEY_FILE"])
        keys = json.loads((home / "key_file.json").read_text())
        assert json.loads(page_key_file.read_text()) == {"inference": keys["inference"]}
        # Item 10: the run folder and everything TorchServe writes there are this user's alone.
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for path in [home / "key_file.json", page_key_file, *(home / "logs").glob("*.log")]:
            assert private(path), path

        supervisor.send_signal(signal.SIGHUP)
        assert supervisor.wait(timeout=90) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGINT)
            supervisor.wait(timeout=90)
        leftovers = [process for process in tree if process.is_running()]
        stop_tree(leftovers, timeout=5)
    assert_all_gone(tree)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=5)


def test_failed_torchserve_stop_still_ends_java_and_its_workers(model_store, tmp_path):
    server = TorchServe.on_free_ports(tmp_path / "ts", model_store=model_store)
    tree: list[psutil.Process] = []
    try:
        server.start()
        server.wait_ready(timeout=120)
        tree = process_tree(server.process.pid)
        assert any("java" in process.name() for process in tree)
        # Without its pid file, `torchserve --stop` finds nothing to stop.
        for pid_file in (server.home / "tmp").glob("*.pid"):
            pid_file.unlink()
        server.stop(timeout=10)
        assert_all_gone(tree)
    finally:
        stop_tree([process for process in tree if process.is_running()], timeout=5)


def test_a_model_url_outside_the_model_store_is_refused(torchserve, model_store, tmp_path):
    lookalike = tmp_path / "model_store"
    lookalike.mkdir()
    shutil.copy(model_store / "skin.mar", lookalike / "evil.mar")
    management = torchserve.url("management")
    response = requests.post(f"{management}/models", timeout=120,
                             params={"url": f"file://{lookalike / 'evil.mar'}", "model_name": "evil",
                                     "initial_workers": 0, "synchronous": "true"},
                             headers=torchserve.headers("management"))
    registered = requests.get(f"{management}/models", headers=torchserve.headers("management"),
                              timeout=30).json()["models"]
    if any(model["modelName"] == "evil" for model in registered):
        requests.delete(f"{management}/models/evil", headers=torchserve.headers("management"),
                        timeout=60)
    assert response.status_code >= 400 and "does not match any allowed URL" in response.text
    assert [model["modelName"] for model in registered] == ["skin"]


@pytest.mark.parametrize("archive", ["../skin.mar", "/tmp/model_store/x.mar",
                                     "file:///tmp/model_store/x.mar", "https://host/x.mar",
                                     "skin.tar", "sub/skin.mar", ".hidden.mar"])
def test_ops_register_takes_only_bare_mar_names(archive):
    with pytest.raises(ValueError, match="bare .mar file name"):
        archive_name(archive)


def test_ops_register_cleans_the_model_name():
    assert model_name("  skin-v2_b \n") == "skin-v2_b"
    assert archive_name(" skin-2.0.mar ") == "skin-2.0.mar"
    for bad in ("", "skin/../x", "skin name", "-skin", "skin?x=1"):
        with pytest.raises(ValueError, match="not a model name"):
            model_name(bad)


def test_ops_register_refuses_a_path_in_one_line(torchserve):
    result = subprocess.run([sys.executable, "-m", "ops", "--key-file", str(torchserve.key_file),
                             "--management-url", torchserve.url("management"), "register",
                             "--archive", "/tmp/model_store/x.mar"],
                            cwd=settings.REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "bare .mar file name" in result.stderr


def openssl_text(path: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout


def validity_days(text: str) -> float:
    def date(label: str) -> datetime:
        found = re.search(rf"{label}\s*: (.+ GMT)", text).group(1)
        return datetime.strptime(re.sub(r"\s+", " ", found), "%b %d %H:%M:%S %Y GMT")
    return (date("Not After") - date("Not Before")).total_seconds() / 86400


def test_phone_certificate_is_a_name_constrained_short_lived_ca_with_no_key_left(tmp_path):
    tls = ensure_certificate(tmp_path / "tls", LAN)
    ca = openssl_text(tls.ca)
    assert re.search(r"Basic Constraints: critical\s+CA:TRUE, pathlen:0", ca)
    constraints = re.search(r"Name Constraints: critical\s+Permitted:\s+((?:\s*\S+\n)+)", ca).group(1)
    assert constraints.split() == ["DNS:localhost", "IP:127.0.0.1/255.255.255.255",
                                   f"IP:{LAN}/255.255.255.255", "email:.invalid", "URI:.invalid"]
    assert "Excluded" not in ca and validity_days(ca) <= VALID_DAYS
    assert re.search(r"Extended Key Usage:\s+TLS Web Server Authentication\n", ca)
    leaf = openssl_text(tls.cert)  # the first certificate of the chain Streamlit sends
    assert re.search(r"Basic Constraints: critical\s+CA:FALSE", leaf) and validity_days(leaf) <= VALID_DAYS
    assert f"IP Address:{LAN}" in leaf and "TLS Web Server Authentication" in leaf
    subprocess.run(["openssl", "verify", "-CAfile", str(tls.ca), str(tls.cert)], check=True,
                   capture_output=True)
    # The CA's key signed the leaf and is gone: copying the folder lets no one sign anything else.
    keys = [path for path in (tmp_path / "tls").iterdir() if b"PRIVATE KEY" in path.read_bytes()]
    assert keys == [tls.key] and private(tls.key) and private(tmp_path / "tls")


@pytest.mark.parametrize("name", ["email:someone@example.com", "URI:https://example.com/",
                                  "DNS:example.com", "IP:192.0.2.70"])
def test_the_phone_ca_cannot_vouch_for_any_other_name(tmp_path, name):
    # The same CA as ensure_certificate's, its key kept here for once, signing one name more.
    key, ca = tmp_path / "ca-key.pem", tmp_path / "ca.pem"
    make_ca(key, ca, names_for(LAN), VALID_DAYS)
    leaf = Tls(LAN, ca, tmp_path / "cert.pem", tmp_path / "key.pem")
    make_leaf(key, leaf, [*names_for(LAN), name], VALID_DAYS, tmp_path)
    verified = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(ca),
                               str(leaf.cert)], capture_output=True, text=True)
    assert verified.returncode != 0 and "subtree violation" in verified.stdout + verified.stderr
    honest = Tls(LAN, ca, tmp_path / "honest.pem", tmp_path / "honest-key.pem")
    make_leaf(key, honest, names_for(LAN), VALID_DAYS, tmp_path)
    subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(ca), str(honest.cert)],
                   check=True, capture_output=True)


def test_a_certificate_for_a_longer_address_is_not_reused_for_its_prefix(tmp_path):
    longer = ensure_certificate(tmp_path / "tls", "192.0.2.23").ca.read_bytes()
    prefix = ensure_certificate(tmp_path / "tls", "192.0.2.2")
    assert prefix.ca.read_bytes() != longer
    assert "IP Address:192.0.2.2\n" in openssl_text(prefix.cert) + "\n"


def test_phone_certificate_is_renewed_near_its_end_or_for_a_new_address(tmp_path):
    kept = ensure_certificate(tmp_path / "tls", LAN).ca.read_bytes()
    assert ensure_certificate(tmp_path / "tls", LAN).ca.read_bytes() == kept
    moved = ensure_certificate(tmp_path / "tls", "192.0.2.8")
    assert moved.ca.read_bytes() != kept and "IP Address:192.0.2.8" in openssl_text(moved.cert)
    ending = ensure_certificate(tmp_path / "ending", LAN, days=1).ca.read_bytes()
    assert ensure_certificate(tmp_path / "ending", LAN).ca.read_bytes() != ending


def test_phone_mode_listens_on_the_chosen_address_only(tmp_path):
    tls = ensure_certificate(tmp_path / "tls", LAN)
    command = streamlit_command(8501, tls)
    assert command[command.index("--server.address") + 1] == LAN and "0.0.0.0" not in command
    local = streamlit_command(8501, None)
    assert local[local.index("--server.address") + 1] == "127.0.0.1"
    assert PASS_PHRASE_VARIABLE in access_environment(tls) and not access_environment(None)


def test_phone_mode_prints_the_ca_fingerprint_that_a_phone_shows(tmp_path):
    tls = ensure_certificate(tmp_path / "tls", LAN)
    access = access_environment(tls)
    text = announce(8501, tls, access)
    shown = subprocess.run(["openssl", "x509", "-in", str(tls.ca), "-noout", "-fingerprint", "-sha256"],
                           capture_output=True, text=True, check=True).stdout.split("=", 1)[1].strip()
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", shown)
    assert shown in text and str(tls.ca) in text and access[PASS_PHRASE_VARIABLE] in text


@pytest.mark.parametrize("version", ["../../../tmp/x", "2.0/../../x", "", ".hidden", "2.0 beta", "a/b"])
def test_a_release_version_that_is_no_file_name_is_refused_before_any_path_is_built(version, tmp_path):
    release = write_random_release(tmp_path / "release", version=version)
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(ValueError, match="cannot name an archive"):
        versioned_archive(release, store)
    assert not any(store.iterdir()) and not any(tmp_path.glob("**/x*.mar"))


def test_a_plain_release_version_names_its_archive():
    assert release_version("2.0") == "2.0" and release_version("3.0-rc_1") == "3.0-rc_1"
