"""Train one RecBole sequential model on files the bench wrote, score its test cases.

Runs INSIDE the RecBole venv (bench/recbole_env.py), as a subprocess of
bench/quality.py; imports nothing from recstream. Inputs in ``--work``:

- ``<ds>/<ds>.{train,valid,test}.inter``: RecBole "benchmark" files, already
  augmented (``user_id``, ``item_id_list`` = last <=50 items, ``item_id`` target),
  so RecBole uses exactly the bench's split and does no re-sorting of its own;
  item tokens are the bench's catalog rows.
- ``cases.npz``: full valid/test histories (row space) for masking.

Early stopping uses the same protocol as recstream: valid NDCG@10 over the full
catalog with the user's earlier items masked. Output ``<model>.test_scores.npy``
((B, N) float32 in catalog-row space, -inf for items RecBole never saw, NOT
masked: the bench masks and scores with training/metrics.py) and ``<model>.json``.

With ``--ranks-only`` the test cases are not saved as scores but as each target's
0-based pessimistic rank with the case's history masked (``<model>.test_ranks.npy``;
the catalog size for a target RecBole cannot score): a replayed stream has far
more cases than a (B, N) matrix should hold (ml-1m: 300k x 3.6k floats).

After every epoch the run state (model, optimizer, best state, epoch log) goes to
``<model>.ckpt.pt``; ``--resume`` continues from it, so a peer that needs hours to
converge (GRU4Rec on ml-1m: ~11 min an epoch on 2 cores) can be trained across
several sittings. A resumed run's shuffling differs from an uninterrupted one.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _histories(npz: np.lib.npyio.NpzFile, split: str) -> list[np.ndarray]:
    flat, offsets = npz[f"{split}_hist"], npz[f"{split}_offsets"]
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", required=True, choices=["SASRec", "GRU4Rec"])
    ap.add_argument("--n-items", type=int, required=True)
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--time-budget", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    # 256 (SASRec paper: 128) rather than RecBole's 2048: same compute per epoch, 8x more
    # updates, so it converges within the few epochs a 2-core machine affords.
    ap.add_argument("--train-batch-size", type=int, default=256)
    ap.add_argument("--resume", action="store_true", help="continue from <model>.ckpt.pt")
    ap.add_argument("--max-len", type=int, default=50, help="MAX_ITEM_LIST_LENGTH")
    ap.add_argument(
        "--ranks-only", action="store_true", help="save masked test ranks, not test scores"
    )
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    cfg = {
        "data_path": str(args.work),
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
        "alias_of_item_id": ["item_id_list"],
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "eval_args": {"order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["NDCG"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "train_batch_size": args.train_batch_size,
        "eval_batch_size": 2048,
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "log_wandb": False,
        "checkpoint_dir": str(args.work / "saved"),
    }
    t_setup = time.perf_counter()
    config = Config(model=args.model, dataset=args.dataset, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    setup_s = time.perf_counter() - t_setup

    # catalog row <-> RecBole internal id (tokens are the bench's rows as strings)
    tokens = dataset.field2id_token["item_id"]  # internal id -> token; 0 is "[PAD]"
    internal = np.array([i for i in range(1, len(tokens))], dtype=np.int64)
    rows = np.array([int(tokens[i]) for i in internal], dtype=np.int64)
    npz = np.load(args.work / "cases.npz")
    valid_hist = _histories(npz, "valid")

    def masked_ranks(s: np.ndarray, hist: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
        for i, h in enumerate(hist):
            s[i, h] = -np.inf
        t = s[np.arange(len(s)), targets][:, None]
        rank = (s > t).sum(1) + (s == t).sum(1) - 1
        rank[np.isneginf(t[:, 0])] = s.shape[1]
        return rank

    def score(loader, ranks_of: list[np.ndarray] | None = None) -> np.ndarray:
        """(B, N) scores of the loader's cases, or with ``ranks_of`` (their histories) the
        (B,) masked target ranks, batch by batch."""
        model.eval()
        out = []
        done = 0
        with torch.no_grad():
            for batch in loader:
                inter = batch[0].to(config["device"])
                s = model.full_sort_predict(inter).view(len(inter), -1).cpu().numpy()
                full = np.full((len(inter), args.n_items), -np.inf, dtype=np.float32)
                full[:, rows] = s[:, internal]
                # file order is case order: check it through the targets
                targets = np.array([int(tokens[i]) for i in inter["item_id"].tolist()])
                out_targets.append(targets)
                if ranks_of is None:
                    out.append(full)
                else:
                    hist = ranks_of[done : done + len(targets)]
                    out.append(masked_ranks(full, hist, targets))
                done += len(targets)
        return np.concatenate(out)

    def valid_ndcg10() -> float:
        out_targets.clear()
        s = score(valid_data)
        targets = np.concatenate(out_targets)
        if not np.array_equal(targets, npz["valid_targets"]):
            raise SystemExit("RecBole reordered the validation cases: refusing to score")
        rank = masked_ranks(s, valid_hist, targets)
        return float(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0).mean())

    out_targets: list[np.ndarray] = []
    best, best_state, best_epoch, bad, epochs = -math.inf, None, -1, 0, []
    ckpt = args.work / f"{args.model}.ckpt.pt"
    partial = ckpt.with_suffix(".tmp")
    if args.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        best, best_state, best_epoch = state["best"], state["best_state"], state["best_epoch"]
        bad, epochs = state["bad"], state["epochs"]
        print(f"resumed after epoch {len(epochs) - 1} (best {best_epoch})", file=sys.stderr)
    done_before = sum(e["seconds"] for e in epochs)  # budget and train_seconds span sittings
    t0 = time.perf_counter() - done_before
    stopped = bad >= args.patience
    for epoch in range(len(epochs), 0 if stopped else args.max_epochs):
        te = time.perf_counter()
        model.train()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        loss = float(sum(loss) if isinstance(loss, tuple) else loss)
        ndcg = valid_ndcg10()
        epochs.append(
            {
                "epoch": epoch,
                "loss": loss,
                "valid_ndcg@10": ndcg,
                "seconds": time.perf_counter() - te,
            }
        )
        print(json.dumps(epochs[-1]), file=sys.stderr, flush=True)
        if ndcg > best:
            best, best_epoch, bad = ndcg, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": trainer.optimizer.state_dict(),
                "best": best,
                "best_state": best_state,
                "best_epoch": best_epoch,
                "bad": bad,
                "epochs": epochs,
            },
            partial,
        )
        partial.replace(ckpt)  # a kill mid-write keeps the last checkpoint
        if bad >= args.patience:
            break
        if time.perf_counter() - t0 > args.time_budget:
            print("time budget reached", file=sys.stderr)
            break
    train_s = time.perf_counter() - t0
    assert best_state is not None
    model.load_state_dict(best_state)
    out_targets.clear()
    test_out = score(test_data, _histories(npz, "test") if args.ranks_only else None)
    if not np.array_equal(np.concatenate(out_targets), npz["test_targets"]):
        raise SystemExit("RecBole reordered the test cases: refusing to score")
    kind = "test_ranks" if args.ranks_only else "test_scores"
    np.save(args.work / f"{args.model}.{kind}.npy", test_out)
    (args.work / f"{args.model}.json").write_text(
        json.dumps(
            {
                "model": args.model,
                "best_epoch": best_epoch,
                "best_valid_ndcg@10": best,
                "epochs_run": len(epochs),
                "max_epochs": args.max_epochs,
                "patience": args.patience,
                "train_seconds": train_s,
                "setup_seconds": setup_s,
                "epochs": epochs,
                "train_batch_size": args.train_batch_size,
                "n_parameters": sum(p.numel() for p in model.parameters()),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
