"""collector.py: Azure's file layout and fields, sampling, the bounded queue, failures that never reach a request."""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import collector
import endpoint_collection
import online_traffic
from collector import CollectionSettings, CollectorError, DataCollector, LocalSink
from conftest import wait_until
from scripts.azurite import Azurite

WHEN = datetime(2026, 11, 30, 23, 59, 58, 123000, tzinfo=timezone.utc)
ROWS = [{"mean radius": 17.99, "mean texture": 10.38}, {"mean radius": 11.0, "mean texture": None}]
OUTS = [{"prediction": 0, "probability": 0.01}, {"prediction": 1, "probability": 0.97}]
FIELDS = ["specversion", "id", "source", "type", "datacontenttype", "time", "data", "correlationid",
          "xrequestid", "modelversion", "collectdatatype", "agent", "contentrange"]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def local_collector(root: Path, **kwargs) -> DataCollector:
    return DataCollector(LocalSink(root), "risk-endpoint", "blue", instance="inst-1", **kwargs)


def test_layout_and_every_field(tmp_path):
    c = local_collector(tmp_path)
    assert c.collect(ROWS, OUTS, request_id="req-1", model_version="v002", when=WHEN) is True
    assert c.flush() == 2
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jsonl"))
    assert files == [
        "modelDataCollector/risk-endpoint/blue/model_inputs/2026/11/30/23/inst-1.jsonl",
        "modelDataCollector/risk-endpoint/blue/model_outputs/2026/11/30/23/inst-1.jsonl",
    ]
    [inp] = lines(tmp_path / files[0])
    [out] = lines(tmp_path / files[1])
    for event, kind, data in ((inp, "model_inputs", ROWS), (out, "model_outputs", OUTS)):
        assert list(event) == FIELDS
        assert event["specversion"] == "1.0"
        assert event["type"] == f"azureml.inference.{kind}"
        assert event["source"] == "/onlineEndpoints/risk-endpoint/deployments/blue"
        assert event["datacontenttype"] == "application/json"
        assert event["time"] == "2026-11-30T23:59:58.123Z"
        assert event["data"] == data
        assert event["xrequestid"] == "req-1"
        assert event["modelversion"] == "v002"
        assert event["collectdatatype"] == "pandas.core.frame.DataFrame"
        assert event["agent"] == collector.AGENT
        size = len(json.dumps(data, separators=(",", ":")).encode())
        assert event["contentrange"] == f"bytes 0-{size - 1}/{size}"
    assert inp["correlationid"] == out["correlationid"]
    assert inp["id"] != out["id"]


def test_hours_are_utc_and_files_are_appended(tmp_path):
    c = local_collector(tmp_path)
    paris = timezone(timedelta(hours=1))
    c.collect(ROWS, OUTS, request_id="a", model_version="v001", when=datetime(2026, 12, 1, 0, 30, tzinfo=paris))
    c.flush()
    c.collect(ROWS, OUTS, request_id="b", model_version="v001", when=datetime(2026, 11, 30, 23, 45, tzinfo=timezone.utc))
    c.flush()
    path = tmp_path / "modelDataCollector/risk-endpoint/blue/model_inputs/2026/11/30/23/inst-1.jsonl"
    assert [e["xrequestid"] for e in lines(path)] == ["a", "b"]


def test_inputs_and_outputs_join_by_correlationid_with_equal_rows(tmp_path):
    c = local_collector(tmp_path)
    for i in range(50):
        rows = [{"x": float(j)} for j in range(i % 4 + 1)]
        c.collect(rows, [{"prediction": 0, "probability": 0.5}] * len(rows), request_id=f"r{i}",
                  model_version="v001", when=WHEN)
    c.flush()
    inputs = {e["correlationid"]: e for e in lines(next(tmp_path.rglob("model_inputs/**/*.jsonl")))}
    outputs = {e["correlationid"]: e for e in lines(next(tmp_path.rglob("model_outputs/**/*.jsonl")))}
    assert len(inputs) == 50 and set(inputs) == set(outputs)
    for key, event in inputs.items():
        assert len(event["data"]) == len(outputs[key]["data"])
        assert event["xrequestid"] == outputs[key]["xrequestid"]


def test_sampling_half_of_2000_requests(tmp_path):
    c = local_collector(tmp_path, collection=CollectionSettings(sampling_rate=0.5), rng=random.Random(7))
    kept = sum(c.collect(ROWS, OUTS, request_id=str(i), model_version="v001", when=WHEN) for i in range(2000))
    c.flush()
    written = lines(next(tmp_path.rglob("model_inputs/**/*.jsonl")))
    assert len(written) == kept == c.stats()["sampled"]
    assert abs(kept / 2000 - 0.5) <= 0.05
    assert c.stats()["requests"] == 2000


def test_sampling_zero_and_one_collection_off(tmp_path):
    c = local_collector(tmp_path, collection=CollectionSettings(outputs=False, sampling_rate=1.0))
    c.collect(ROWS, OUTS, request_id="a", model_version="v001", when=WHEN)
    c.flush()
    assert [p.parts[-6] for p in tmp_path.rglob("*.jsonl")] == ["model_inputs"]
    off = local_collector(tmp_path / "off", collection=CollectionSettings(sampling_rate=0.0))
    assert off.collect(ROWS, OUTS, request_id="a", model_version="v001") is False
    assert off.flush() == 0 and not (tmp_path / "off").exists()


def test_full_queue_drops_and_counts(tmp_path):
    c = local_collector(tmp_path, queue_size=3)
    results = [c.collect(ROWS, OUTS, request_id=str(i), model_version="v001", when=WHEN) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert c.stats() | {} == {"requests": 5, "sampled": 3, "dropped": 2, "written_model_inputs": 0,
                              "written_model_outputs": 0, "lost_model_inputs": 0, "lost_model_outputs": 0,
                              "write_failures": 0, "queued": 3}
    assert c.flush() == 6 and c.stats()["queued"] == 0


def test_read_only_folder_counts_and_logs_once_a_minute(read_only_dir, caplog):
    root = read_only_dir
    with pytest.raises(OSError):
        (root / "probe").write_text("x")
    now = [1000.0]
    c = local_collector(root, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="collector"):
        for step in range(3):
            assert c.collect(ROWS, OUTS, request_id=str(step), model_version="v001", when=WHEN) is True
            assert c.flush() == 0  # no exception reaches the caller
            now[0] += 20
        now[0] += 60
        c.collect(ROWS, OUTS, request_id="later", model_version="v001", when=WHEN)
        c.flush()
    stats = c.stats()
    assert stats["write_failures"] == 8
    assert stats["lost_model_inputs"] == stats["lost_model_outputs"] == 4
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "cannot write modelDataCollector/risk-endpoint/blue/model_inputs/2026/11/30/23/inst-1.jsonl" in warnings[0]
    assert ("PermissionError" in warnings[0] or "Read-only file system" in warnings[0])
    assert "requests are not affected" in warnings[0]
    assert "6 failed writes since the last message, 7 lines lost in all" in warnings[1]


def test_background_writer_and_stop_flush(tmp_path):
    c = local_collector(tmp_path, flush_seconds=0.05)
    c.start()
    c.collect(ROWS, OUTS, request_id="bg", model_version="v001", when=WHEN)
    path = tmp_path / "modelDataCollector/risk-endpoint/blue/model_outputs/2026/11/30/23/inst-1.jsonl"
    wait_until(lambda: path.exists() and path.read_text(), 20, "the background writer's first flush")
    assert [e["xrequestid"] for e in lines(path)] == ["bg"]
    c.flush_seconds = 3600  # from here on only stop() writes
    c.stop()
    c.start()
    c.collect(ROWS, OUTS, request_id="at-stop", model_version="v001", when=WHEN)
    c.stop()
    assert [e["xrequestid"] for e in lines(path)] == ["bg", "at-stop"]


@pytest.mark.parametrize("section, expected", [
    (None, None),
    ({"collections": {"model_inputs": {"enabled": "True"}, "model_outputs": {"enabled": "True"}},
      "sampling_rate": 1.0, "rolling_rate": "Hour"}, CollectionSettings(True, True, 1.0)),
    ({"collections": {"model_inputs": {"enabled": "True"}}, "sampling_rate": 0.25},
     CollectionSettings(True, False, 0.25)),
    ({"collections": {"model_inputs": {"enabled": "False"}, "model_outputs": {"enabled": "true"}}},
     CollectionSettings(False, True, 1.0)),
])
def test_settings_from_a_deployment(section, expected):
    spec = {"name": "blue"} if section is None else {"name": "blue", "data_collector": section}
    assert CollectionSettings.from_deployment(spec) == expected


@pytest.mark.parametrize("section, message", [
    ({"collections": {"model_inputs": {"enabled": "yes"}}},
     "data_collector.collections.model_inputs.enabled must be 'True' or 'False', got 'yes'"),
    ({"collections": {"request": {"enabled": "True"}}},
     "data_collector.collections.request is not collected here: use model_inputs and model_outputs"),
    ({"collections": {"model_inputs": {"enabled": "True"}}, "sampling_rate": 1.5},
     "data_collector.sampling_rate must be a number from 0 to 1, got 1.5"),
])
def test_bad_settings_say_which_field(section, message):
    with pytest.raises(CollectorError) as err:
        CollectionSettings.from_deployment({"data_collector": section})
    assert str(err.value) == message


def test_read_events_filters_the_window_and_skips_a_cut_line(tmp_path):
    c = local_collector(tmp_path)
    base = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)
    for minutes in (-1, 0, 30, 59, 60, 61):
        c.collect(ROWS, OUTS, request_id=f"m{minutes}", model_version="v001", when=base + timedelta(minutes=minutes))
    c.flush()
    path = tmp_path / "modelDataCollector/risk-endpoint/blue/model_inputs/2026/11/30/10/inst-1.jsonl"
    with open(path, "ab") as handle:
        handle.write(b'{"specversion": "1.0", "id"')  # a writer still appending
    events, skipped = online_traffic.read_events(LocalSink(tmp_path), "risk-endpoint", "blue", "model_inputs",
                                           base, base + timedelta(hours=1))
    assert [e["xrequestid"] for e in events] == ["m0", "m30", "m59"]
    assert skipped == 1


def test_metrics_exporter(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    c = local_collector(tmp_path, queue_size=1)
    c.collect(ROWS, OUTS, request_id="a", model_version="v001", when=WHEN)
    c.collect(ROWS, OUTS, request_id="b", model_version="v001", when=WHEN)
    c.flush()
    registry = CollectorRegistry()
    registry.register(endpoint_collection.MetricsExporter([c]))
    text = generate_latest(registry).decode()
    assert 'data_collector_requests_total{deployment="blue",endpoint="risk-endpoint",outcome="dropped"} 1.0' in text
    assert ('data_collector_lines_total{collection="model_inputs",deployment="blue",endpoint="risk-endpoint",'
            'outcome="written"} 1.0') in text
    assert 'data_collector_write_failures_total{deployment="blue",endpoint="risk-endpoint"} 0.0' in text


# ----- blob storage (Azurite) --------------------------------------------------------------
def test_blob_layout_then_azurite_stopped(tmp_path):
    azurite = Azurite(tmp_path / "azurite", in_memory=True, log=tmp_path / "azurite.log")
    azurite.start()
    try:
        sink = collector.BlobSink(azurite.connection_string, timeout=2.0)
        c = DataCollector(sink, "risk-endpoint", "blue", instance="inst-1")
        c.collect(ROWS, OUTS, request_id="a", model_version="v001", when=WHEN)
        c.collect(ROWS, OUTS, request_id="b", model_version="v001", when=WHEN)
        assert c.flush() == 4
        c.collect(ROWS, OUTS, request_id="c", model_version="v001", when=WHEN)
        assert c.flush() == 2
        names = sink.list("modelDataCollector/risk-endpoint")
        assert names == ["modelDataCollector/risk-endpoint/blue/model_inputs/2026/11/30/23/inst-1.jsonl",
                         "modelDataCollector/risk-endpoint/blue/model_outputs/2026/11/30/23/inst-1.jsonl"]
        events = [json.loads(x) for x in sink.read(names[0]).splitlines()]
        assert [e["xrequestid"] for e in events] == ["a", "b", "c"]
    finally:
        azurite.stop()
    c.collect(ROWS, OUTS, request_id="d", model_version="v001", when=WHEN)
    assert c.flush() == 0
    stats = c.stats()
    assert stats["write_failures"] == 2 and stats["lost_model_inputs"] == 1 and stats["written_model_inputs"] == 3
    azurite.start()  # back on the same port, empty (in memory): the container and blobs are made again
    try:
        c.collect(ROWS, OUTS, request_id="e", model_version="v001", when=WHEN)
        assert c.flush() == 2
        names = sink.list("modelDataCollector/risk-endpoint")
        assert [json.loads(x)["xrequestid"] for x in sink.read(names[0]).splitlines()] == ["e"]
    finally:
        azurite.stop()


def test_a_full_disk_counts_lost_lines_and_recovers(tmp_path):
    """A small tmpfs filled up (as root), else a folder whose writes fail as a full disk's do."""
    import errno
    import os
    import subprocess

    root = tmp_path / "small"
    root.mkdir()
    mounted = os.geteuid() == 0
    if mounted:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(root)], check=True)
        sink = LocalSink(root)
    else:
        class FullSink(LocalSink):
            full = True

            def append(self, path, data):
                if self.full:
                    raise OSError(errno.ENOSPC, "No space left on device")
                super().append(path, data)
        sink = FullSink(root)
    try:
        filler = root / "filler"
        if mounted:
            with open(filler, "wb", buffering=0) as handle:
                with pytest.raises(OSError) as full:
                    while True:
                        handle.write(b"x" * 4096)
                assert full.value.errno == errno.ENOSPC
                handle.truncate(handle.tell() - 8192)  # room for part of a line, not a whole one
        c = DataCollector(sink, "risk-endpoint", "blue", instance="inst-1")
        big = [{"f": "y" * 2000} for _ in range(20)]  # 40 KB a line: more than what is left
        assert c.collect(big, OUTS, request_id="full", model_version="v001", when=WHEN) is True
        assert c.flush() < 2
        assert c.stats()["write_failures"] >= 1 and c.stats()["lost_model_inputs"] == 1
        if mounted:
            filler.unlink()
        else:
            sink.full = False
        c.collect(ROWS, OUTS, request_id="after", model_version="v001", when=WHEN)
        assert c.flush() == 2
        path = root / "modelDataCollector/risk-endpoint/blue/model_inputs/2026/11/30/23/inst-1.jsonl"
        assert [json.loads(x)["xrequestid"] for x in path.read_text().splitlines()] == ["after"]  # every line whole
    finally:
        if mounted:
            subprocess.run(["umount", str(root)], check=True)


def test_request_ids_are_uuid4_and_a_forked_child_draws_its_own():
    import os
    import uuid

    collector._SPARE_UUIDS.clear()
    first = collector.uuid4_string()
    assert uuid.UUID(first).version == 4 and str(uuid.UUID(first)) == first
    spare = set(collector._SPARE_UUIDS)
    assert len(spare) == 255 and first not in spare
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id must not be one the parent still holds
        os.write(write, collector.uuid4_string().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert uuid.UUID(child).version == 4 and child not in spare
