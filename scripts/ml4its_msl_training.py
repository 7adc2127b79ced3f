"""Trains the reference, ML4ITS/mtad-gat-pytorch, on dataset-level MSL with its own code (its
MTAD_GAT, SlidingWindowDataset, create_data_loaders and Trainer, imported from a checkout) and
writes the weights as a flow bundle, so that `flow step evaluate` can judge how the reference's
own trainings score, seed by seed.

Why: the published MSL figures come from one training. This measures the spread of the
reference's trainings on the same data, beside flow's (README, "Accuracy on MSL").

One change, for time only: the GATv2 attention logits e_ij = a . LeakyReLU(lin([v_i || v_j]))
are computed as a . LeakyReLU(W_l v_i + b + W_r v_j), fused by torch.compile, instead of
materialising [B, N, N, 2D] tensors. The script checks on a batch that both give the same
values and gradients before it trains. A training takes ~30 min on 2 cores instead of ~8 h.
Also skipped: Trainer.fit's two loss evaluations before the first epoch (printed only).

    python scripts/ml4its_msl_training.py <ML4ITS checkout> <telemanom dir> <out dir> \
        --seed 0 --bundle-template <a flow MSL train run>/model

Writes <out>/model.pt (the reference's own format) and, with --bundle-template,
<out>/model/{flow-model.json,weights.safetensors}. Needs torch and safetensors, and what ML4ITS
imports: numpy, pandas, scikit-learn, matplotlib, tensorboard, tqdm, more_itertools.
"""
import argparse
import csv
import gzip
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ml4its", type=Path, help="checkout of ML4ITS/mtad-gat-pytorch")
    p.add_argument("telemanom", type=Path, help="directory with train/, test/, labeled_anomalies.csv")
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--bundle-template", type=Path, help="a flow MSL bundle dir (its flow-model.json is copied)")
    return p.parse_args()


def load_npy(path_without_ext):
    """A telemanom channel, `.npy` or `.npy.gz`."""
    plain = Path(str(path_without_ext) + ".npy")
    if plain.exists():
        return np.load(plain)
    with gzip.open(str(plain) + ".gz", "rb") as f:
        return np.load(f)


def msl_train(telemanom):
    """MSL training rows as ML4ITS's preprocess.py concatenates them: channels sorted by id, P-2 skipped."""
    with open(telemanom / "labeled_anomalies.csv") as f:
        rows = list(csv.reader(f))[1:]
    channels = sorted(r[0] for r in rows if r[1] == "MSL" and r[0] != "P-2")
    return np.asarray(np.concatenate([load_npy(telemanom / "train" / c) for c in channels]), dtype=np.float32)


def _logits(left, right, a, alpha: float):
    """e_ij = a . LeakyReLU(left_i + right_j) for every (i, j)."""
    return (F.leaky_relu(left.unsqueeze(2) + right.unsqueeze(1), alpha) * a.squeeze(1)).sum(-1)


# One compiled kernel per shape: two layers x batch sizes x grad on/off exceed the default 8.
torch._dynamo.config.recompile_limit = 64
_fused_logits = torch.compile(_logits, dynamic=False)


def _attend(layer, nodes):
    """ML4ITS's GATv2 layer forward on nodes [b, N, d], with the logits fused."""
    d = nodes.size(-1)
    w = layer.lin.weight
    left = torch.matmul(nodes, w[:, :d].t()) + layer.lin.bias
    right = torch.matmul(nodes, w[:, d:].t())
    e = _fused_logits(left, right, layer.a, layer.leakyrelu.negative_slope)
    if layer.use_bias:
        e = e + layer.bias
    attention = torch.dropout(torch.softmax(e, dim=2), layer.dropout, train=layer.training)
    return torch.sigmoid(torch.matmul(attention, nodes))


def _feature_forward(self, x):
    return _attend(self, x.permute(0, 2, 1)).permute(0, 2, 1)


def _temporal_forward(self, x):
    return _attend(self, x)


def fuse_attention(modules):
    """Swaps in the fused forward after checking it against ML4ITS's on a random batch."""
    torch.manual_seed(12345)
    for cls, fused in [(modules.FeatureAttentionLayer, _feature_forward),
                       (modules.TemporalAttentionLayer, _temporal_forward)]:
        layer = cls(55, 100, 0.3, 0.2).eval()
        with torch.no_grad():
            layer.bias.normal_()
        x = torch.rand(4, 100, 55)
        want = layer(x)
        want_grads = torch.autograd.grad(want.square().sum(), list(layer.parameters()))
        got = fused(layer, x)
        got_grads = torch.autograd.grad(got.square().sum(), list(layer.parameters()))
        err = (want - got).abs().max().item()
        assert err < 1e-5, f"{cls.__name__}: fused forward differs by {err}"
        for (name, _), g, h in zip(layer.named_parameters(), want_grads, got_grads):
            rel = ((g - h).abs().max() / g.abs().max().clamp_min(1e-12)).item()
            assert rel < 1e-3, f"{cls.__name__}.{name}: fused gradient differs by {rel} (relative)"
        cls.forward = fused


def write_bundle(state, template, out):
    """flow's bundle: the template's flow-model.json, and the weights under their torch names."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(template / "flow-model.json", out / "flow-model.json")
    save_file({name: t.detach().float().contiguous() for name, t in state.items()}, out / "weights.safetensors")


def main():
    args = parse_args()
    sys.path.insert(0, str(args.ml4its))
    import modules  # noqa: E402  (ML4ITS)
    from mtad_gat import MTAD_GAT  # noqa: E402
    from training import Trainer  # noqa: E402
    from utils import SlidingWindowDataset, create_data_loaders, normalize_data  # noqa: E402

    torch.set_num_threads(2)
    fuse_attention(modules)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)

    # train.py with the published MSL config (output/MSL/27062021_111641/config.txt).
    x_train, _ = normalize_data(msl_train(args.telemanom), scaler=None)
    x_train = torch.from_numpy(x_train).float()
    window, batch_size, target_dims = 100, 256, [0]
    train_dataset = SlidingWindowDataset(x_train, window, target_dims)
    train_loader, val_loader, _ = create_data_loaders(train_dataset, batch_size, 0.1, True)
    model = MTAD_GAT(x_train.shape[1], window, len(target_dims), kernel_size=7, use_gatv2=True,
                     feat_gat_embed_dim=None, time_gat_embed_dim=None, gru_n_layers=1,
                     gru_hid_dim=150, forecast_n_layers=3, forecast_hid_dim=150, recon_n_layers=1,
                     recon_hid_dim=150, dropout=0.3, alpha=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    args.out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(model, optimizer, window, x_train.shape[1], target_dims, args.epochs,
                      batch_size, 1e-3, torch.nn.MSELoss(), torch.nn.MSELoss(), False,
                      str(args.out), str(args.out / "logs"), 1, False, "")
    evaluate, calls = trainer.evaluate, [0]

    def skip_initial(loader):
        calls[0] += 1
        return (float("nan"),) * 3 if calls[0] <= 2 else evaluate(loader)

    trainer.evaluate = skip_initial
    start = time.time()
    trainer.fit(train_loader, val_loader)
    seconds = time.time() - start
    windows = len(train_loader.sampler) * args.epochs
    print(f"trained {windows} windows in {seconds:.0f} s: {windows / seconds:.1f} windows/s (validation included)")
    losses = {k: [float(v) for v in vs] for k, vs in trainer.losses.items()}
    (args.out / "losses.json").write_text(json.dumps({"seed": args.seed, "seconds": seconds, **losses}, indent=1))
    if args.bundle_template:
        # The last epoch's weights: Trainer.fit saves model.pt after every epoch (it compares
        # the new validation loss with itself), so they are also what model.pt holds.
        write_bundle(model.state_dict(), args.bundle_template, args.out / "model")
        print(f"wrote {args.out / 'model'}")


if __name__ == "__main__":
    main()
