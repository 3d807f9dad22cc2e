"""Each model's inference deployment scales on its own queue: the policy Serve builds from a
model's autoscaling config counts that model's jobs only (real SQLite store, no Ray cluster)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from serve_app.builder import inference_options
from tests.deployments.test_autoscaling import FakeClock, context, decide_now, fast_config
from voiceq.jobs import new_job, new_job_id
from voiceq.settings import Settings
from voiceq.store.sqlite import SQLiteJobStore

ALL = "chatterbox,chatterbox-turbo,chatterbox-multilingual"


def test_a_burst_for_one_model_scales_only_that_models_deployment(tmp_path: Path, monkeypatch) -> None:
    settings = Settings(data_dir=tmp_path, environment="production", chatterbox_mode="remote", models=ALL)
    for key, value in fast_config().to_dict().items():
        monkeypatch.setenv(f"VOICEQ_SCALE_{key.upper()}", str(value))
    store = SQLiteJobStore(settings.sqlite_path)
    clock = FakeClock()
    for i in range(6):
        store.create(new_job(job_id=new_job_id(), user_id=f"u{i}", voice_name="v", sample_text="Hi there.",
                             audio_key=f"uploads/{i}.wav", audio_seconds=6.0, now=clock.now, model="chatterbox-turbo"))

    def policy_for(model: str):
        config = inference_options(settings, model=model)["autoscaling_config"]
        assert config.policy.policy_kwargs["model"] == model
        cls = config.policy.get_policy()
        return cls(**config.policy.policy_kwargs, store=store, clock=clock), config

    async def scenario() -> dict[str, int]:
        desired = {}
        for model in ("chatterbox", "chatterbox-turbo", "chatterbox-multilingual"):
            policy, config = policy_for(model)
            desired[model] = await decide_now(policy, context(config, target=0))
        return desired

    desired = asyncio.run(scenario())
    assert desired["chatterbox-turbo"] >= 1
    assert desired["chatterbox"] == desired["chatterbox-multilingual"] == 0
    # With one model served, the policy reads the whole queue, as before the family.
    single = inference_options(Settings(data_dir=tmp_path, chatterbox_mode="remote"), model="chatterbox")
    assert "model" not in single["autoscaling_config"].policy.policy_kwargs


def test_the_app_has_one_inference_deployment_per_served_model(tmp_path: Path) -> None:
    from ray.serve import Application

    from serve_app.builder import compose

    app = compose(Settings(data_dir=tmp_path, models=ALL, autoscale=True))
    ingress = app._bound_deployment
    by_model = ingress.init_args[5]  # (settings, jobs, inference, wake, fleet, by_model)
    assert set(by_model) == set(ALL.split(","))
    names = {m: a._bound_deployment.name for m, a in by_model.items() if isinstance(a, Application)}
    assert names == {"chatterbox": "VoiceCloneInference",
                     "chatterbox-turbo": "VoiceCloneInference-chatterbox-turbo",
                     "chatterbox-multilingual": "VoiceCloneInference-chatterbox-multilingual"}
    for model, a in by_model.items():
        policy = a._bound_deployment._deployment_config.autoscaling_config.policy
        assert policy.policy_kwargs["model"] == model
        assert a._bound_deployment.init_args[3] == model
