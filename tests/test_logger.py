"""Logger / CsvLog: files pandas reads, whose columns widen when a new key shows up."""
import pandas as pd

from rl.logger import CsvLog, Logger


def test_csv_columns_widen_and_keep_earlier_rows(tmp_path):
    log = CsvLog(tmp_path / "t.csv", ["a"])
    log.write({"a": 1})
    log.write({"a": 2, "b": 0.5})          # a new key: header rewritten, row 1 kept
    log.write({"b": 1.5, "a": 3})
    log.write({"a": 4, "c": "x", "b": 2})
    log.close()
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table.columns) == ["a", "b", "c"]
    assert list(table.a) == [1, 2, 3, 4]
    assert table.b.isna().tolist() == [True, False, False, False]
    assert list(table.b[1:]) == [0.5, 1.5, 2.0]
    assert table.c.tolist()[-1] == "x" and table.c.isna().sum() == 3


def test_train_log_of_a_run_without_updates_still_has_its_header(tmp_path):
    logger = Logger(tmp_path)
    logger.eval(0, [1.0, 3.0], 0.1)
    logger.close()
    assert list(pd.read_csv(tmp_path / "train.csv").columns) == [
        "env_step", "episode", "episode_return", "duration_s", "steps_per_s"]
    assert pd.read_csv(tmp_path / "eval.csv").episode_return.tolist() == [2.0]


def test_warm_up_rows_come_before_the_update_metrics(tmp_path):
    logger = Logger(tmp_path)
    base = {"episode": 1, "episode_return": 5.0, "duration_s": 1.0, "steps_per_s": 9.0}
    logger.train({"env_step": 100, **base})                       # random-action warm-up
    logger.train({"env_step": 200, **base, "critic_loss": 0.5})   # losses only
    logger.train({"env_step": 300, **base, "critic_loss": 0.25, "q_mean": 3.0})  # + diagnostics
    logger.close()
    table = pd.read_csv(tmp_path / "train.csv")
    assert list(table.env_step) == [100, 200, 300]
    assert table.critic_loss.isna().tolist() == [True, False, False]
    assert table.q_mean.isna().tolist() == [True, True, False]
