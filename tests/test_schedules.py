import keras
import numpy as np
import pytest

from tfdlgm.models import VAE
from tfdlgm.schedules import StagedDecay


def test_burdas_schedule_has_its_eight_stages_of_3_to_the_i_epochs():
    schedule = StagedDecay()
    assert [schedule.stage_start(i) for i in range(9)] == [0, 1, 4, 13, 40, 121, 364, 1093, 3280]
    for i in range(8):  # the first and the last epoch of each stage: 1e-3 * 10^(-i/7)
        for epoch in (schedule.stage_start(i), schedule.stage_start(i + 1) - 1):
            np.testing.assert_allclose(schedule(epoch), 1e-3 * 10 ** (-i / 7), rtol=1e-12)
    np.testing.assert_allclose(schedule(3279), 1e-4, rtol=1e-12)
    assert schedule(10_000) == schedule(3279)  # the last stage's rate after its end


def test_changes_list_what_a_run_over_some_epochs_trained_at():
    schedule = StagedDecay(base=1.0, decay=0.5, growth=2, stages=4)  # stages from 0, 1, 3, 7
    assert schedule.changes(0, 4) == [[0, 1.0], [1, 0.5], [3, 0.25]]
    assert schedule.changes(2, 20) == [[2, 0.5], [3, 0.25], [7, 0.125]]
    assert schedule.changes(8, 20) == [[8, 0.125]]
    assert schedule.changes(5, 5) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"base": 0.0}, "`base` must be a positive float"),
        ({"base": float("inf")}, "`base` must be finite"),
        ({"decay": -0.5}, "`decay` must be a positive float"),
        ({"growth": 1}, "`growth` must be an int >= 2"),
        ({"stages": 0}, "stages"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StagedDecay(**kwargs)
    with pytest.raises(ValueError, match="epoch"):
        StagedDecay()(-1)


def test_fit_trains_at_the_schedules_rate_and_a_resumed_fit_continues_it(rng):
    x = (rng.uniform(size=(64, 12)) < 0.5).astype("float32")
    schedule = StagedDecay(base=0.01, decay=0.5, growth=2, stages=3)  # stages from 0, 1, 3
    model = VAE(latent_dim=2, hidden=(8,), data_dim=12, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1.0))
    scheduler = keras.callbacks.LearningRateScheduler(schedule)
    first = model.fit(x, batch_size=32, epochs=2, verbose=0, callbacks=[scheduler])
    resumed = model.fit(
        x, batch_size=32, epochs=5, initial_epoch=2, verbose=0, callbacks=[scheduler]
    )
    rates = first.history["learning_rate"] + resumed.history["learning_rate"]
    np.testing.assert_allclose(rates, [0.01, 0.005, 0.005, 0.0025, 0.0025], rtol=1e-6)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.0025)
