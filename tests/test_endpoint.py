"""endpoint_spec.py and endpoint.py: an endpoint read from its Azure ML YAML, Azure's traffic rules,
the model references mapped onto the registry, and the traffic state that `update` records.

Every endpoint here is written under tmp_path (the working folder too, so messages name short
relative paths); the registry holds registered versions of a stand-in model file (nothing here
unpickles a model).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml

import endpoint
import endpoint_spec
from conftest import ROOT, run_script
from endpoint_spec import EndpointSpecError
from registry import Registry

ENDPOINT = {"$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json",
            "name": "risk-endpoint", "auth_mode": "key", "traffic": {"blue": 90, "green": 10}, "mirror_traffic": {}}


def deployment(name: str, model: object, **extra: object) -> dict:
    return {"$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json",
            "name": name, "endpoint_name": "risk-endpoint", "model": model, "instance_count": 1,
            "request_settings": {"request_timeout_ms": 3000, "max_concurrent_requests_per_instance": 4}, **extra}


def register(root: Path, count: int) -> None:
    """`count` new versions of a stand-in model file."""
    reg = Registry(root)
    for _ in range(count):
        def write(staging: Path) -> None:
            (staging / "model.joblib").write_bytes(b"stand-in")
            (staging / "metrics.json").write_text('{"accuracy": 0.9}')
        reg.register(write, {})


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """online/{endpoint,blue,green}.yml, a registry with v001 and v002, a state folder; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(tmp_path / "registry"))
    monkeypatch.setenv("LOCAL_ENDPOINTS_DIR", str(tmp_path / "state"))
    register(tmp_path / "registry", 2)
    online = tmp_path / "online"
    online.mkdir()
    files = {"endpoint.yml": ENDPOINT, "blue.yml": deployment("blue", "azureml:risk-classifier:1"),
             "green.yml": deployment("green", "azureml:risk-classifier@latest")}
    for name, data in files.items():
        write_yaml(online / name, data)
    return online


def write_yaml(path: Path, data: object) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def edit(path: Path, **changes: object) -> None:
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    write_yaml(path, data)


def load(online: Path) -> endpoint_spec.EndpointSpec:
    return endpoint_spec.load_endpoint(online / "endpoint.yml")


def error_of(online: Path) -> str:
    with pytest.raises(EndpointSpecError) as caught:
        load(online)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ----- loading -------------------------------------------------------------------------------------
def test_the_projects_endpoint_loads_with_its_two_deployments(tmp_path):
    registry = tmp_path / "registry"
    register(registry, 2)
    spec = endpoint_spec.load_endpoint(ROOT / "azureml" / "online" / "endpoint.yml", registry)
    assert (spec.name, spec.auth_mode) == ("risk-endpoint", "key")
    assert spec.traffic == {"blue": 90, "green": 10} and spec.mirror_traffic == {}
    assert list(spec.deployments) == ["blue", "green"]
    blue, green = spec.deployments["blue"], spec.deployments["green"]
    assert (blue.model_ref, blue.version_spec) == ("azureml:risk-classifier:1", 1)
    assert (green.model_ref, green.version_spec) == ("azureml:risk-classifier:2", 2)
    for item in (blue, green):
        settings = (item.instance_count, item.request_timeout_ms, item.max_concurrent_requests_per_instance)
        assert settings == (1, 5000, 16)
        assert item.max_in_flight == 32 > 8  # the benchmark's concurrency never meets a 429
        assert item.data_collector == {
            "collections": {"model_inputs": {"enabled": "True"}, "model_outputs": {"enabled": "True"}},
            "sampling_rate": 1.0, "rolling_rate": "Hour"}
    assert blue.source == ROOT / "azureml" / "online" / "blue-deployment.yml"
    assert spec.source == ROOT / "azureml" / "online" / "endpoint.yml" and spec.registry_dir == registry


def test_a_deployment_spec_holds_every_field(project):
    edit(project / "green.yml", data_collector={"collections": {"model_inputs": {"enabled": "True"}}})
    spec = load(project)
    assert spec.deployments["green"] == endpoint_spec.DeploymentSpec(
        name="green", model_ref="azureml:risk-classifier@latest", version_spec="latest", instance_count=1,
        request_timeout_ms=3000, max_concurrent_requests_per_instance=4,
        data_collector={"collections": {"model_inputs": {"enabled": "True"}}}, source=project / "green.yml")
    assert spec.deployments["green"].request_timeout_s == 3.0
    assert spec.deployments["green"].max_in_flight == 8


def test_azure_defaults_fill_absent_keys(project):
    edit(project / "blue.yml", request_settings=None, instance_count=None)
    edit(project / "green.yml", request_settings={"request_timeout_ms": 900})
    spec = load(project)
    blue, green = spec.deployments["blue"], spec.deployments["green"]
    assert (blue.request_timeout_ms, blue.max_concurrent_requests_per_instance, blue.instance_count) == (5000, 1, 1)
    assert blue.max_in_flight == 2
    assert (green.request_timeout_ms, green.max_concurrent_requests_per_instance) == (900, 1)


def test_only_deployments_naming_this_endpoint_belong_to_it(project):
    write_yaml(project / "other.yml", {**deployment("red", "azureml:risk-classifier:9"), "endpoint_name": "other"})
    write_yaml(project / "notes.yaml", ["not", "a", "deployment"])
    write_yaml(project / "model.yml", {"name": "risk-classifier", "path": "../registry/model_v001"})
    assert list(load(project).deployments) == ["blue", "green"]
    write_yaml(project / "red.yaml", deployment("red", "azureml:risk-classifier:1"))
    assert list(load(project).deployments) == ["blue", "green", "red"]


def test_traffic_left_out_is_zero_for_every_deployment(project):
    edit(project / "endpoint.yml", traffic=None, mirror_traffic=None)
    assert (load(project).traffic, load(project).mirror_traffic) == ({"blue": 0, "green": 0}, {})
    edit(project / "endpoint.yml", traffic={"green": 100}, mirror_traffic={"blue": 20})
    assert (load(project).traffic, load(project).mirror_traffic) == ({"blue": 0, "green": 100}, {"blue": 20})
    edit(project / "endpoint.yml", mirror_traffic={"blue": 0})
    assert load(project).mirror_traffic == {}


# ----- model references ----------------------------------------------------------------------------
@pytest.mark.parametrize("model, version", [
    ("azureml:risk-classifier:2", 2),
    ("azureml:risk-classifier:1", 1),
    ("azureml:risk-classifier@latest", "latest"),
    ("azureml:risk-classifier:latest", "latest"),
    ("../registry/model_v002", 2),
    ({"path": "../registry/model_v001"}, 1),
    ("ABSOLUTE", 2),
])
def test_model_references_map_onto_the_registry(project, model, version):
    if model == "ABSOLUTE":
        model = str(project.parent / "registry" / "model_v002")
    edit(project / "green.yml", model=model)
    green = load(project).deployments["green"]
    assert green.version_spec == version
    assert green.model_ref == (model["path"] if isinstance(model, dict) else model)


@pytest.mark.parametrize("model, message", [
    ("azureml:risk-classifier:3",
     "online/green.yml: model: azureml:risk-classifier:3: version v003 is not in the registry registry "
     "(available: v001, v002)"),
    ("azureml:other-model:1",
     "online/green.yml: model: azureml:other-model:1: unknown model 'other-model' (the local registry holds "
     "risk-classifier)"),
    ("azureml:risk-classifier@stable",
     "online/green.yml: model: azureml:risk-classifier@stable: the only label is @latest"),
    ("azureml:risk-classifier:two",
     "online/green.yml: model: azureml:risk-classifier:two: invalid model version 'two': use 'latest', "
     "a number like 2, or v002"),
    ("azureml:risk-classifier",
     "online/green.yml: model: azureml:risk-classifier: expected azureml:risk-classifier:VERSION or "
     "azureml:risk-classifier@latest"),
    ("../elsewhere/model_v001",
     "online/green.yml: model: ../elsewhere/model_v001 lies outside the registry (registry); use a version "
     "folder inside it or azureml:risk-classifier:VERSION"),
    ("../registry/model_v001/model.joblib",
     "online/green.yml: model: ../registry/model_v001/model.joblib is not a version folder of the registry "
     "(expected registry/model_v001 or the like)"),
    ("../registry/model_v007", "online/green.yml: model: ../registry/model_v007: version v007 is not in the "
     "registry registry (available: v001, v002)"),
    ({"name": "risk-classifier"},
     "online/green.yml: model: an inline model needs a path inside the registry (REGISTRY)"),
    (5, "online/green.yml: model: expected azureml:NAME:VERSION, azureml:NAME@latest or a path, got 5"),
    (None, "online/green.yml: model: missing; give azureml:risk-classifier:1, azureml:risk-classifier@latest "
     "or a version folder of the registry"),
])
def test_bad_model_references_are_one_line_errors(project, model, message):
    data = yaml.safe_load((project / "green.yml").read_text())
    data["model"] = model
    write_yaml(project / "green.yml", data)
    assert error_of(project) == message.replace("REGISTRY", str(project.parent / "registry"))


def test_a_version_registered_later_makes_a_pinned_reference_load(project):
    edit(project / "green.yml", model="azureml:risk-classifier:3")
    assert "version v003 is not in the registry" in error_of(project)
    register(project.parent / "registry", 1)
    assert load(project).deployments["green"].version_spec == 3


# ----- every bad YAML --------------------------------------------------------------------------------
BAD_ENDPOINTS = {
    "traffic over 100": ({"traffic": {"blue": 90, "green": 20}},
                         "online/endpoint.yml: traffic: the weights sum to 110; they must sum to 100 "
                         "(or 0 for no live traffic)"),
    "traffic under 100": ({"traffic": {"blue": 40, "green": 10}},
                          "online/endpoint.yml: traffic: the weights sum to 50; they must sum to 100 "
                          "(or 0 for no live traffic)"),
    "weight over 100": ({"traffic": {"blue": 101, "green": -1}},
                        "online/endpoint.yml: traffic: blue=101: a weight is a whole number from 0 to 100"),
    "negative weight": ({"traffic": {"blue": -10, "green": 110}},
                        "online/endpoint.yml: traffic: blue=-10: a weight is a whole number from 0 to 100"),
    "fractional weight": ({"traffic": {"blue": 89.5, "green": 10.5}},
                          "online/endpoint.yml: traffic: blue=89.5: a weight is a whole number from 0 to 100"),
    "text weight": ({"traffic": {"blue": "ninety", "green": 10}},
                    "online/endpoint.yml: traffic: blue='ninety': a weight is a whole number from 0 to 100"),
    "traffic not a mapping": ({"traffic": "blue=90 green=10"},
                              "online/endpoint.yml: traffic: expected a mapping of deployment name to percentage, "
                              "got 'blue=90 green=10'"),
    "unknown deployment": ({"traffic": {"blue": 90, "red": 10}},
                           "online/endpoint.yml: traffic: unknown deployment 'red' (deployments: blue, green)"),
    "mirror over 50": ({"traffic": {"blue": 100, "green": 0}, "mirror_traffic": {"green": 60}},
                       "online/endpoint.yml: mirror_traffic: 60% is over the 50% Azure allows for mirrored traffic"),
    "mirror onto a live deployment": ({"mirror_traffic": {"green": 10}},
                                      "online/endpoint.yml: mirror_traffic: green has live traffic (10%); a "
                                      "deployment with live traffic cannot also receive mirrored traffic"),
    "mirror to an unknown deployment": ({"mirror_traffic": {"red": 10}},
                                        "online/endpoint.yml: mirror_traffic: unknown deployment 'red' "
                                        "(deployments: blue, green)"),
    "mirror weight over 100": ({"traffic": {"blue": 100}, "mirror_traffic": {"green": 150}},
                               "online/endpoint.yml: mirror_traffic: green=150: a weight is a whole number "
                               "from 0 to 100"),
    "bad auth mode": ({"auth_mode": "password"},
                      "online/endpoint.yml: auth_mode: expected one of key, aml_token, aad_token, got 'password'"),
    "bad endpoint name": ({"name": "x"},
                          "online/endpoint.yml: name: 'x' is not a valid name (a letter, then letters, digits or "
                          "hyphens, 3-32 characters)"),
    "a deployment YAML given as the endpoint": ({"endpoint_name": "risk-endpoint"},
                                                "online/endpoint.yml: endpoint_name: this is a deployment YAML; "
                                                "pass the endpoint's YAML"),
}


@pytest.mark.parametrize("case", BAD_ENDPOINTS, ids=list(BAD_ENDPOINTS))
def test_bad_endpoint_yaml_is_a_one_line_error(project, case):
    changes, message = BAD_ENDPOINTS[case]
    edit(project / "endpoint.yml", **changes)
    assert error_of(project) == message


def test_mirror_onto_two_deployments_is_refused(project):
    write_yaml(project / "red.yml", deployment("red", "azureml:risk-classifier:1"))
    edit(project / "endpoint.yml", traffic={"red": 100}, mirror_traffic={"blue": 10, "green": 10})
    assert error_of(project) == ("online/endpoint.yml: mirror_traffic: mirrors to blue, green; Azure mirrors to "
                                 "one deployment at most")


BAD_DEPLOYMENTS = {
    "timeout 0": ({"request_settings": {"request_timeout_ms": 0}},
                  "online/blue.yml: request_settings.request_timeout_ms: expected a whole number 1 to 180000, got 0"),
    "timeout over Azure's limit": ({"request_settings": {"request_timeout_ms": 180001}},
                                   "online/blue.yml: request_settings.request_timeout_ms: expected a whole number "
                                   "1 to 180000, got 180001"),
    "concurrency as text": ({"request_settings": {"max_concurrent_requests_per_instance": "many"}},
                            "online/blue.yml: request_settings.max_concurrent_requests_per_instance: expected a "
                            "whole number at least 1, got 'many'"),
    "concurrency as a bool": ({"request_settings": {"max_concurrent_requests_per_instance": True}},
                              "online/blue.yml: request_settings.max_concurrent_requests_per_instance: expected a "
                              "whole number at least 1, got True"),
    "no instances": ({"instance_count": 0},
                     "online/blue.yml: instance_count: expected a whole number at least 1, got 0"),
    "request settings not a mapping": ({"request_settings": [1, 2]},
                                       "online/blue.yml: request_settings: expected a mapping, got list"),
    "data collector not a mapping": ({"data_collector": "on"},
                                     "online/blue.yml: data_collector: expected a mapping, got str"),
    "bad deployment name": ({"name": "1st"},
                            "online/blue.yml: name: '1st' is not a valid name (a letter, then letters, digits or "
                            "hyphens, 3-32 characters)"),
    "no name": ({"name": None},
                "online/blue.yml: name: None is not a valid name (a letter, then letters, digits or hyphens, "
                "3-32 characters)"),
}


@pytest.mark.parametrize("case", BAD_DEPLOYMENTS, ids=list(BAD_DEPLOYMENTS))
def test_bad_deployment_yaml_is_a_one_line_error(project, case):
    changes, message = BAD_DEPLOYMENTS[case]
    data = yaml.safe_load((project / "blue.yml").read_text())
    data.update(changes)
    write_yaml(project / "blue.yml", data)
    assert error_of(project) == message


def test_a_deployment_named_twice_is_refused(project):
    write_yaml(project / "blue-copy.yml", deployment("blue", "azureml:risk-classifier:2"))
    assert error_of(project) == ("online/blue.yml: name: deployment 'blue' is also defined in online/blue-copy.yml; "
                                 "each deployment needs its own name")


@pytest.mark.parametrize("name", ["endpoint.yml", "green.yml", "unrelated.yml"])
def test_invalid_yaml_anywhere_in_the_folder_is_refused(project, name):
    (project / name).write_text("name: blue\nmodel: [azureml:risk-classifier:1\n")
    assert error_of(project) == (f"online/{name}: invalid YAML at line 3, column 1: "
                                 "expected ',' or ']', but got '<stream end>'")


def test_a_key_written_twice_is_refused_not_silently_overwritten(project):
    (project / "endpoint.yml").write_text("name: risk-endpoint\ntraffic:\n  blue: 90\n  green: 10\n  green: 0\n")
    assert error_of(project) == "online/endpoint.yml: invalid YAML at line 5, column 3: key 'green' written twice"


def test_yaml_anchors_and_merge_keys_still_load(project):
    text = (project / "green.yml").read_text()
    assert "instance_count: 1\n" in text
    (project / "green.yml").write_text("tags: &defaults\n  instance_count: 2\n" +
                                       text.replace("instance_count: 1\n", "<<: *defaults\n"))
    spec = endpoint_spec.load_endpoint(project / "endpoint.yml")
    assert spec.deployments["green"].instance_count == 2


def test_endpoint_yaml_that_is_missing_empty_or_has_no_deployment(project):
    with pytest.raises(EndpointSpecError, match="^online/nowhere.yml: file not found$"):
        endpoint_spec.load_endpoint(project / "nowhere.yml")
    (project / "endpoint.yml").write_text("")
    assert error_of(project) == "online/endpoint.yml: expected a mapping of endpoint fields, got NoneType"
    write_yaml(project / "endpoint.yml", ENDPOINT)
    (project / "blue.yml").unlink()
    assert error_of(project) == "online/endpoint.yml: traffic: unknown deployment 'blue' (deployments: green)"
    (project / "green.yml").unlink()
    assert error_of(project) == "online/endpoint.yml: no deployment YAML in online has endpoint_name: risk-endpoint"


# ----- traffic strings -------------------------------------------------------------------------------
def test_traffic_strings_read_as_az_ml_writes_them():
    parse = endpoint_spec.parse_assignments
    assert parse("blue=90 green=10", "--traffic") == {"blue": 90, "green": 10}
    assert parse("  blue=0,green=100 ", "--traffic") == {"blue": 0, "green": 100}
    for text, problem in [("", 'expected NAME=PERCENT pairs such as "blue=90 green=10"'),
                          ("blue", "'blue' is not NAME=PERCENT"),
                          ("blue=ten", "blue=ten: a weight is a whole number from 0 to 100"),
                          ("blue=-5", "blue=-5: a weight is a whole number from 0 to 100"),
                          ("blue=101", "blue=101: a weight is a whole number from 0 to 100"),
                          ("blue=50 blue=50", "blue is given twice"), ("blue==5", "'blue==5' is not NAME=PERCENT")]:
        with pytest.raises(EndpointSpecError) as caught:
            parse(text, "--traffic")
        assert str(caught.value) == f'--traffic "{text}": {problem}'


# ----- the traffic state --------------------------------------------------------------------------------
def test_state_round_trip(project, tmp_path):
    spec = load(project)
    assert endpoint_spec.state_path(spec) == tmp_path / "state" / "risk-endpoint.json"
    assert endpoint_spec.read_state(spec) is None and endpoint_spec.state_stamp(spec) is None
    assert endpoint_spec.effective(spec) == ({"blue": 90, "green": 10}, {})

    first = endpoint_spec.update_traffic(spec, {"blue": 100}, {"green": 20})
    assert (first.traffic, first.mirror_traffic, first.revision) == ({"blue": 100, "green": 0}, {"green": 20}, 1)
    stored = json.loads(endpoint_spec.state_path(spec).read_text())
    assert stored == {"endpoint": "risk-endpoint", "revision": 1, "updated_at": first.updated_at,
                      "traffic": {"blue": 100, "green": 0}, "mirror_traffic": {"green": 20}}
    assert first.updated_at.endswith("+00:00")
    assert endpoint_spec.read_state(spec) == first
    assert endpoint_spec.effective(spec) == ({"blue": 100, "green": 0}, {"green": 20})
    stamp = endpoint_spec.state_stamp(spec)

    second = endpoint_spec.update_traffic(spec, {"blue": 100, "green": 0}, {"green": 0})
    assert (second.traffic, second.mirror_traffic, second.revision) == ({"blue": 100, "green": 0}, {}, 2)
    assert endpoint_spec.state_stamp(spec) != stamp
    assert endpoint_spec.effective(spec) == ({"blue": 100, "green": 0}, {})


def test_updates_keep_or_clear_the_mirror_and_count_revisions(project):
    spec = load(project)
    states = [endpoint_spec.update_traffic(spec, {"blue": 100, "green": 0}, {"green": 10}),
              endpoint_spec.update_traffic(spec, {"blue": 100}),
              endpoint_spec.update_traffic(spec, mirror={"green": 30}),
              endpoint_spec.update_traffic(spec, {"blue": 0, "green": 100}, {"green": 0}),
              endpoint_spec.update_traffic(spec, {"blue": 0, "green": 0})]
    assert [(s.revision, s.traffic, s.mirror_traffic) for s in states] == [
        (1, {"blue": 100, "green": 0}, {"green": 10}),
        (2, {"blue": 100, "green": 0}, {"green": 10}),
        (3, {"blue": 100, "green": 0}, {"green": 30}),
        (4, {"blue": 0, "green": 100}, {}),
        (5, {"blue": 0, "green": 0}, {}),
    ]
    assert endpoint_spec.effective(spec) == ({"blue": 0, "green": 0}, {})


def test_every_write_changes_the_stamp_and_reset_goes_back_to_the_yaml(project):
    spec = load(project)
    stamps = [endpoint_spec.state_stamp(spec)]
    for traffic in ({"blue": 50, "green": 50}, {"blue": 50, "green": 50}, {"blue": 0, "green": 100}):
        endpoint_spec.update_traffic(spec, traffic)
        stamps.append(endpoint_spec.state_stamp(spec))
    assert stamps[0] is None and len(set(stamps)) == 4
    assert endpoint_spec.reset_state(spec) is True
    assert endpoint_spec.state_stamp(spec) is None and endpoint_spec.read_state(spec) is None
    assert endpoint_spec.effective(spec) == ({"blue": 90, "green": 10}, {})
    assert endpoint_spec.reset_state(spec) is False


def test_concurrent_updates_never_share_a_revision(project):
    spec = load(project)
    revisions: list[int] = []

    def updates() -> None:
        for _ in range(10):
            revisions.append(endpoint_spec.update_traffic(spec, {"blue": 50, "green": 50}).revision)

    threads = [threading.Thread(target=updates) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(revisions) == list(range(1, 41))
    assert endpoint_spec.read_state(spec).revision == 40


def test_a_state_that_no_longer_fits_the_yaml_is_an_error(project):
    spec = load(project)
    endpoint_spec.update_traffic(spec, {"green": 100})
    path = endpoint_spec.state_path(spec)
    (project / "green.yml").unlink()
    edit(project / "endpoint.yml", traffic={"blue": 100})
    smaller = load(project)
    with pytest.raises(EndpointSpecError) as caught:
        endpoint_spec.effective(smaller)
    assert str(caught.value) == "state/risk-endpoint.json: traffic: unknown deployment 'green' (deployments: blue)"
    path.write_text("{not json")
    with pytest.raises(EndpointSpecError, match=r"^state/risk-endpoint.json: not a readable traffic state .*"
                                                r"run python endpoint.py reset --endpoint online/endpoint.yml$"):
        endpoint_spec.read_state(smaller)
    path.write_text('{"traffic": {}}')
    with pytest.raises(EndpointSpecError, match=r"^state/risk-endpoint.json: not a traffic state file; run python "
                                                r"endpoint.py reset --endpoint online/endpoint.yml$"):
        endpoint_spec.read_state(smaller)


# ----- endpoint.py ------------------------------------------------------------------------------------------
def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = endpoint.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_update_prints_and_records_the_new_state(project, capsys):
    code, out, err = cli(capsys, "update", "--endpoint", "online/endpoint.yml", "--traffic", "blue=0 green=100")
    assert (code, err) == (0, "")
    printed = json.loads(out)
    assert printed == {"endpoint": "risk-endpoint", "revision": 1, "updated_at": printed["updated_at"],
                       "traffic": {"blue": 0, "green": 100}, "mirror_traffic": {},
                       "state_file": "state/risk-endpoint.json"}
    code, out, _ = cli(capsys, "update", "--endpoint", "online/endpoint.yml", "--traffic", "blue=100 green=0",
                       "--mirror-traffic", "green=10")
    assert code == 0 and json.loads(out)["mirror_traffic"] == {"green": 10} and json.loads(out)["revision"] == 2
    code, out, _ = cli(capsys, "update", "--endpoint", "online/endpoint.yml", "--mirror-traffic", "green=0")
    assert code == 0 and json.loads(out)["mirror_traffic"] == {} and json.loads(out)["traffic"] == {"blue": 100,
                                                                                                    "green": 0}


BAD_UPDATES = {
    "sum over 100": (["--traffic", "blue=60 green=50"],
                     "--traffic: the weights sum to 110; they must sum to 100 (or 0 for no live traffic)"),
    "sum under 100": (["--traffic", "green=90"],
                      "--traffic: the weights sum to 90; they must sum to 100 (or 0 for no live traffic)"),
    "unknown deployment": (["--traffic", "blue=90 red=10"],
                           "--traffic: unknown deployment 'red' (deployments: blue, green)"),
    "weight over 100": (["--traffic", "blue=150"], '--traffic "blue=150": blue=150: a weight is a whole number '
                                                   'from 0 to 100'),
    "negative weight": (["--traffic", "blue=-10 green=110"], '--traffic "blue=-10 green=110": blue=-10: a weight is '
                                                             'a whole number from 0 to 100'),
    "not NAME=PERCENT": (["--traffic", "blue:100"], '--traffic "blue:100": \'blue:100\' is not NAME=PERCENT'),
    "mirror over 50": (["--traffic", "blue=100 green=0", "--mirror-traffic", "green=60"],
                       "--mirror-traffic: 60% is over the 50% Azure allows for mirrored traffic"),
    "mirror onto a live deployment": (["--mirror-traffic", "green=10"],
                                      "--mirror-traffic: green has live traffic (10%); a deployment with live "
                                      "traffic cannot also receive mirrored traffic"),
    "mirror to an unknown deployment": (["--traffic", "blue=100", "--mirror-traffic", "red=5"],
                                        "--mirror-traffic: unknown deployment 'red' (deployments: blue, green)"),
    "nothing to change": ([], "give --traffic, --mirror-traffic or both"),
}


@pytest.mark.parametrize("case", BAD_UPDATES, ids=list(BAD_UPDATES))
def test_a_bad_update_changes_nothing_and_says_why_in_one_line(project, capsys, case):
    flags, message = BAD_UPDATES[case]
    code, out, err = cli(capsys, "update", "--endpoint", "online/endpoint.yml", *flags)
    assert (code, out, err) == (1, "", f"error: {message}\n")
    assert not endpoint_spec.state_path(load(project)).exists()


def test_a_bad_update_over_a_recorded_state_leaves_it_as_it_was(project, capsys):
    spec = load(project)
    endpoint_spec.update_traffic(spec, {"blue": 0, "green": 100}, {"blue": 20})
    path = endpoint_spec.state_path(spec)
    before = path.read_bytes()
    for flags, message in [
        (["--traffic", "blue=100 green=0"], "mirror traffic in effect (blue=20; to clear it add "
                                            "--mirror-traffic \"blue=0\"): "
                                            "blue has live traffic (100%); a deployment with live traffic cannot "
                                            "also receive mirrored traffic"),
        (["--mirror-traffic", "green=10"], "--mirror-traffic: green has live traffic (100%); a deployment with live "
                                           "traffic cannot also receive mirrored traffic"),
        (["--mirror-traffic", "blue=20 green=20"], "--mirror-traffic: mirrors to blue, green; Azure mirrors to one "
                                                   "deployment at most"),
        (["--traffic", "blue=10 green=10"], "--traffic: the weights sum to 20; they must sum to 100 "
                                            "(or 0 for no live traffic)"),
    ]:
        code, out, err = cli(capsys, "update", "--endpoint", "online/endpoint.yml", *flags)
        assert (code, out, err) == (1, "", f"error: {message}\n"), flags
        assert path.read_bytes() == before
    # The way out: move the traffic and the mirror in one update.
    code, out, _ = cli(capsys, "update", "--endpoint", "online/endpoint.yml", "--traffic", "blue=100 green=0",
                       "--mirror-traffic", "blue=0 green=20")
    assert code == 0 and json.loads(out)["mirror_traffic"] == {"green": 20}


def test_show_prints_the_deployments_and_the_traffic_in_effect(project, capsys):
    code, out, err = cli(capsys, "show", "--endpoint", "online/endpoint.yml")
    assert (code, err) == (0, "")
    blue = {"name": "blue", "file": "online/blue.yml", "model": "azureml:risk-classifier:1", "version_spec": 1,
            "version": "v001", "traffic": 90, "mirror_traffic": 0, "instance_count": 1, "request_timeout_ms": 3000,
            "max_concurrent_requests_per_instance": 4, "max_in_flight": 8, "data_collector": False}
    green = {**blue, "name": "green", "file": "online/green.yml", "model": "azureml:risk-classifier@latest",
             "version_spec": "latest", "version": "v002", "traffic": 10}
    assert json.loads(out) == {"endpoint": "risk-endpoint", "file": "online/endpoint.yml", "auth_mode": "key",
                               "traffic": {"blue": 90, "green": 10}, "mirror_traffic": {},
                               "traffic_from": "online/endpoint.yml", "revision": 0, "updated_at": None,
                               "deployments": [blue, green]}

    # A new version behind @latest and a recorded change both show at once.
    register(project.parent / "registry", 1)
    state = endpoint_spec.update_traffic(load(project), {"blue": 100}, {"green": 50})
    code, out, _ = cli(capsys, "show", "--endpoint", "online/endpoint.yml")
    shown = json.loads(out)
    assert code == 0
    assert (shown["traffic"], shown["mirror_traffic"], shown["traffic_from"], shown["revision"], shown["updated_at"]) \
        == ({"blue": 100, "green": 0}, {"green": 50}, "state/risk-endpoint.json", 1, state.updated_at)
    assert [(d["name"], d["version"], d["traffic"], d["mirror_traffic"]) for d in shown["deployments"]] == [
        ("blue", "v001", 100, 0), ("green", "v003", 0, 50)]


def test_show_says_when_latest_has_nothing_to_follow(project, tmp_path, capsys):
    empty = tmp_path / "empty-registry"
    edit(project / "blue.yml", model="azureml:risk-classifier@latest")
    code, out, _ = cli(capsys, "show", "--endpoint", "online/endpoint.yml", "--registry-dir", str(empty))
    assert code == 0
    first = json.loads(out)["deployments"][0]
    assert (first["version"], first["version_error"]) == (None, f"no model registered in {empty}: run python train.py")


def test_the_script_updates_shows_and_resets(project, tmp_path):
    env = {"LOCAL_REGISTRY_DIR": str(tmp_path / "registry"), "LOCAL_ENDPOINTS_DIR": str(tmp_path / "state")}
    endpoint_yml = str(project / "endpoint.yml")
    run = run_script("endpoint.py", "update", "--endpoint", endpoint_yml, "--traffic", "blue=0 green=100", env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["traffic"] == {"blue": 0, "green": 100}
    run = run_script("endpoint.py", "show", "--endpoint", endpoint_yml, env=env)
    assert run.returncode == 0 and json.loads(run.stdout)["revision"] == 1
    bad = run_script("endpoint.py", "update", "--endpoint", endpoint_yml, "--traffic", "blue=50", env=env)
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        1, "", "error: --traffic: the weights sum to 50; they must sum to 100 (or 0 for no live traffic)\n")
    run = run_script("endpoint.py", "reset", "--endpoint", endpoint_yml, env=env)
    assert run.returncode == 0 and json.loads(run.stdout) == {
        "endpoint": "risk-endpoint", "dropped": True, "traffic": {"blue": 90, "green": 10}, "mirror_traffic": {},
        "traffic_from": str(project / "endpoint.yml")}
    assert not (tmp_path / "state" / "risk-endpoint.json").exists()
    broken = run_script("endpoint.py", "show", "--endpoint", str(project / "missing.yml"), env=env)
    assert (broken.returncode, broken.stderr) == (1, f"error: {project / 'missing.yml'}: file not found\n")
