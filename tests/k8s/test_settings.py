"""The controller's Kubernetes flags: --kubernetes, --kubeconfig PATH, k8s_resync_s."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.main import StartupError, load_settings, start_kubernetes
from controller.service import Service
from controller.store.sqlite import SqliteStore


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings([]).kubernetes is False and load_settings([]).kubeconfig == ""
    settings = load_settings(["--kubernetes", "--k8s-resync-s", "30"])
    assert settings.kubernetes is True and settings.k8s_resync_s == 30.0
    assert load_settings(["--kubeconfig", "/tmp/kc"]).kubeconfig == "/tmp/kc"
    monkeypatch.setenv("TENET_KUBERNETES", "false")
    assert load_settings([]).kubernetes is False
    monkeypatch.setenv("TENET_KUBERNETES", "maybe")
    with pytest.raises(StartupError) as bad:
        load_settings([])
    assert "maybe" in str(bad.value)


def test_a_kubeconfig_that_cannot_be_loaded_stops_the_start_naming_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "tenet.db")
    try:
        service = Service(store)
        assert start_kubernetes(load_settings([]), service) is None
        missing = tmp_path / "nope"
        with pytest.raises(StartupError) as failed:
            start_kubernetes(load_settings(["--kubeconfig", str(missing)]), service)
        assert str(missing) in str(failed.value)
    finally:
        store.close()
