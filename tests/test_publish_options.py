"""``PublishOptions`` and the faults' options values: checked once, one sentence per bad
value, and passed whole (unit tests, no broker; one CLI test without a broker run)."""
import dataclasses

import pytest

from helpers import faults
from helpers.core import tasks, topology
from helpers.errors import BadInputError
from helpers.experiment.value import Experiment
from helpers.faults.alarm import AlarmOptions
from helpers.faults.broker_down import BrokerDownOptions
from helpers.faults.consumer_timeout import ConsumerTimeoutOptions
from helpers.faults.duplicate import DuplicateOptions
from helpers.faults.heartbeat import HeartbeatOptions
from helpers.faults.leader_kill import NodeLossOptions
from helpers.faults.overflow import OverflowOptions
from helpers.faults.poison import PoisonOptions
from helpers.faults.priority import PriorityOptions
from helpers.faults.retry import RetryOptions
from helpers.faults.shutdown import ShutdownOptions
from helpers.faults.single_active import SingleActiveOptions
from helpers.frameworks.config import FrameworkConfig
from helpers.publish.options import PublishOptions
from helpers.publish.pacing import PacedPublisher


@pytest.mark.parametrize("changes, words", [
    ({"confirms": "sometimes"}, "confirms must be one of pipelined, each, none"),
    ({"window": 0}, "window must be a whole number"),
    ({"window": 2.5}, "window must be a whole number"),
    ({"timeout": 0}, "timeout must be a positive number"),
    ({"retry_for": -1}, "retry_for must be 0 or more"),
    ({"batch": 0}, "batch must be a whole number of at least 1"),
    ({"pace_s": -0.1}, "pace_s must be 0 or more"),
    ({"batch": 5, "confirms": "each"}, "Publishing in batches needs pipelined confirms"),
    ({"fixed_rate": True}, "fixed_rate paces batches"),
])
def test_a_bad_publish_option_is_one_sentence_naming_it(changes, words):
    with pytest.raises(BadInputError) as caught:
        PublishOptions(**changes)
    message = str(caught.value)
    assert words in message and message.endswith(".") and message.count(". ") == 0, message


def test_publish_options_are_frozen_and_replace_checks_again():
    options = PublishOptions(batch=10, pace_s=0.1)
    assert options.paced and not PublishOptions().paced
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch = 3
    assert options.replace(declare_queue=False).declare_queue is False
    with pytest.raises(BadInputError, match="window"):
        options.replace(window=-1)


def test_the_paced_publisher_wants_a_batch():
    spec = topology.QueueSpec("unused")
    with pytest.raises(BadInputError, match="give the options a batch"):
        PacedPublisher("amqp://unused", spec, tasks.equal(3, 0), PublishOptions())
    paced = PacedPublisher("amqp://unused", spec, tasks.equal(3, 0),
                           PublishOptions(batch=2, name="ignored"))
    # every batch goes onto the queue the run declared, under the queue's producer name
    assert not paced.options.declare_queue and paced.options.name == "producer unused"
    assert paced.options.batch == 2


def test_an_experiment_carries_its_publish_options():
    exp = Experiment(2, tasks.equal(4, 0), publish=PublishOptions(batch=2, pace_s=0))
    assert exp.publish.paced and not Experiment(2, tasks.equal(4, 0)).publish.paced
    with pytest.raises(BadInputError, match="published at once"):
        Experiment(2, tasks.equal(4, 0), framework=FrameworkConfig("celery"),
                   publish=PublishOptions(batch=2))


@pytest.mark.parametrize("value_class, changes, words", [
    (BrokerDownOptions, {"fault_after_s": -1}, "fault_after_s must be 0 or more"),
    (BrokerDownOptions, {"min_held": -1}, "min_held must be a whole number"),
    (BrokerDownOptions, {"batch": 0}, "batch must be a whole number"),
    (NodeLossOptions, {"queue_type": "classic"}, "leave the queue type out"),
    (NodeLossOptions, {"pace_s": -1}, "pace_s must be 0 or more"),
    (AlarmOptions, {"hold_s": -1}, "hold_s must be 0 or more"),
    (AlarmOptions, {"backlog": -3}, "backlog must be a whole number"),
    (PoisonOptions, {"limit": 0}, "poisons, limit and max_attempts must be whole numbers"),
    (PoisonOptions, {"window_s": 0}, "window_s must be above 0"),
    (DuplicateOptions, {"crash_after": 0}, "crash_after must be a whole number"),
    (ConsumerTimeoutOptions, {"timeout_s": -1}, "timeout_s and window_s must be above 0"),
    (HeartbeatOptions, {"heartbeat_s": 0}, "heartbeat_s must be a whole number"),
    (HeartbeatOptions, {"window_s": -2}, "window_s must be above 0"),
    (RetryOptions, {"delays": ()}, "delays must be one or more seconds above 0"),
    (RetryOptions, {"delays": (1, 0)}, "delays must be one or more seconds above 0"),
    (RetryOptions, {"delays": 4}, "delays must be one or more seconds above 0"),
    (RetryOptions, {"window_s": 0}, "window_s must be above 0"),
    (RetryOptions, {"broker_delay_ms": 0.5}, "broker_delay_ms must be a whole number"),
    (PriorityOptions, {"urgent": 0}, "urgent must be a whole number of at least 1"),
    (PriorityOptions, {"big_prefetch": -1}, "big_prefetch must be a whole number from 0"),
    (OverflowOptions, {"max_length": 0}, "max_length must be a whole number of at least 1"),
    (OverflowOptions, {"kind": "stream"}, "kind must be one of classic, quorum"),
    (ShutdownOptions, {"task_s": 0}, "task_s must be above 0"),
    (SingleActiveOptions, {"kill_share": 1}, "kill_share must be between 0 and 1"),
])
def test_a_bad_fault_option_is_one_sentence(value_class, changes, words):
    with pytest.raises(BadInputError) as caught:
        value_class(**changes)
    message = str(caught.value)
    assert words in message and message.endswith(".") and message.count(". ") == 0, message


def test_retry_delays_given_as_a_list_are_kept_as_a_tuple():
    assert RetryOptions(delays=[0.5, 2]).delays == (0.5, 2)
    assert RetryOptions(delays=[0.5, 2]) == RetryOptions(delays=(0.5, 2))


def test_the_broker_faults_publish_in_retried_batches():
    publish = BrokerDownOptions(batch=7, pace_s=0.2).publish()
    assert (publish.batch, publish.pace_s) == (7, 0.2) and publish.retry_for > 0


def test_the_fault_command_builds_a_scenarios_value_from_its_command_line():
    given = {"fault_after_s": 0.5, "queue_type": "quorum"}
    assert faults.options_for("crash", given) == BrokerDownOptions(fault_after_s=0.5)
    assert faults.options_for("majority-loss", given) == NodeLossOptions(
        fault_after_s=0.5, queue_type="quorum")
    assert faults.options_for("alarm", given) == AlarmOptions()  # it takes neither
    for name in ("retry", "priority", "single-active", "overflow", "shutdown"):
        assert faults.options_for(name, given) == faults.scenario(name).OPTIONS(), name


def test_run_fault_refuses_a_misspelt_option_before_running():
    with pytest.raises(TypeError, match="fault_after"):
        faults.run_fault("crash", 1, 1, tasks.equal(1, 0), fault_after=0.5)
    with pytest.raises(BadInputError, match="heartbeat_s"):  # checked before any broker
        faults.run_fault("heartbeat", 1, 1, tasks.equal(1, 0), heartbeat_s=0)
    with pytest.raises(TypeError, match="delay"):
        faults.run_fault("retry", 1, 1, tasks.equal(1, 0), delay=(1, 2))
    with pytest.raises(BadInputError, match="urgent"):
        faults.run_fault("priority", 1, 1, tasks.equal(1, 0), urgent=0)


def test_run_fault_builds_the_scenarios_value_from_keywords(monkeypatch):
    from helpers.faults import retry

    seen = {}
    monkeypatch.setattr(retry, "run", lambda *args, **keywords: seen.update(
        args=args, keywords=keywords))
    faults.run_fault("retry", 2, 1, ["t"], delays=[0.5, 2], broker="b")
    assert seen["args"] == ("retry", 2, 1, ["t"], RetryOptions(delays=(0.5, 2)))
    assert seen["keywords"] == {"progress": None, "broker": "b"}


def test_every_scenario_has_an_options_value_and_takes_it_in_run():
    import inspect

    for name in faults.FAULTS:
        module = faults.scenario(name)
        assert dataclasses.is_dataclass(module.OPTIONS), name
        assert module.OPTIONS.__dataclass_params__.frozen, name
        parameters = inspect.signature(module.run).parameters
        assert list(parameters)[1:5] == ["workers", "prefetch", "tasks", "options"], name
        assert parameters["options"].default == module.OPTIONS(), name
        keywords = {p for p, v in parameters.items() if v.kind is v.KEYWORD_ONLY}
        assert "progress" in keywords <= {"broker", "cluster", "progress"}, name
        assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values()), name


def test_the_fault_command_refuses_a_bad_option_in_one_sentence(cli, one_sentence):
    proc = cli("fault", "leader-kill", "--queue-type", "classic")
    one_sentence(proc, "leave the queue type out")
