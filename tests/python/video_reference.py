"""A plain-PyTorch UMT / VideoMAE-style video encoder under the tensor names
docs/backbones.md documents for rs::VideoTransformer, with the paper's
pruning written out in PyTorch: the reference the C++ model is held to.

  patch_embed.proj.weight [dim, in_chans, tubelet, patch, patch]  (Conv3d)
  patch_embed.proj.bias   [dim]
  blocks.{i}.norm1.{weight,bias}, blocks.{i}.attn.qkv.weight [3 dim, dim],
  blocks.{i}.attn.q_bias, blocks.{i}.attn.v_bias [dim] (no k bias),
  blocks.{i}.attn.proj.{weight,bias}, blocks.{i}.norm2.{weight,bias},
  blocks.{i}.mlp.fc1.{weight,bias}, blocks.{i}.mlp.fc2.{weight,bias}
  fc_norm.{weight,bias}, head.{weight,bias}
  position embedding: VideoMAE's fixed sinusoid table (not in the file)
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


def sinusoid_table(tokens, dim):
    """VideoMAE's get_sinusoid_encoding_table, in float64 then float32."""
    pos = np.arange(tokens, dtype=np.float64)[:, None]
    j = np.arange(dim)[None, :]
    angle = pos / np.power(10000.0, 2 * (j // 2) / dim)
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return torch.from_numpy(table.astype(np.float32))


class VideoReference(torch.nn.Module):
    def __init__(self, frames, tubelet, image_size, patch_size, in_chans, dim, depth, heads, mlp_hidden,
                 num_classes, eps=1e-6):
        super().__init__()
        self.cfg = dict(frames=frames, tubelet=tubelet, image_size=image_size, patch_size=patch_size,
                        in_chans=in_chans, dim=dim, depth=depth, heads=heads, mlp_hidden=mlp_hidden,
                        num_classes=num_classes)
        self.heads, self.eps = heads, eps
        self.tokens = (frames // tubelet) * (image_size // patch_size) ** 2
        self.params = {}

    def random_weights(self, seed):
        """Weights with enough spread that pruning decisions are well separated."""
        g = torch.Generator().manual_seed(seed)
        c = self.cfg
        d, h, t, p = c["dim"], c["mlp_hidden"], c["tubelet"], c["patch_size"]

        def rnd(*shape, std=0.05):
            return torch.randn(*shape, generator=g) * std

        w = {"patch_embed.proj.weight": rnd(d, c["in_chans"], t, p, p, std=0.1),
             "patch_embed.proj.bias": rnd(d)}
        for i in range(c["depth"]):
            b = f"blocks.{i}."
            w.update({b + "norm1.weight": 1 + rnd(d), b + "norm1.bias": rnd(d),
                      b + "attn.qkv.weight": rnd(3 * d, d, std=0.1), b + "attn.q_bias": rnd(d),
                      b + "attn.v_bias": rnd(d), b + "attn.proj.weight": rnd(d, d, std=0.1),
                      b + "attn.proj.bias": rnd(d), b + "norm2.weight": 1 + rnd(d), b + "norm2.bias": rnd(d),
                      b + "mlp.fc1.weight": rnd(h, d, std=0.1), b + "mlp.fc1.bias": rnd(h),
                      b + "mlp.fc2.weight": rnd(d, h, std=0.1), b + "mlp.fc2.bias": rnd(d)})
        w.update({"fc_norm.weight": 1 + rnd(d), "fc_norm.bias": rnd(d),
                  "head.weight": rnd(c["num_classes"], d, std=0.1), "head.bias": rnd(c["num_classes"])})
        self.params = w
        return w

    def _attention(self, x, i):
        w, b = self.params, f"blocks.{i}.attn."
        B, N, C = x.shape
        bias = torch.cat([w[b + "q_bias"], torch.zeros_like(w[b + "q_bias"]), w[b + "v_bias"]])
        qkv = F.linear(x, w[b + "qkv.weight"], bias).reshape(B, N, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)
        return F.linear(o.transpose(1, 2).reshape(B, N, C), w[b + "proj.weight"], w[b + "proj.bias"])

    def forward(self, video, drops=()):
        """video [B, in_chans, frames, H, W]; drops: {block: ratio}. Returns
        (logits, [kept indices per pruning block, [B, keep] into its input])."""
        w, c = self.params, self.cfg
        drops = dict(drops)
        t, p = c["tubelet"], c["patch_size"]
        x = F.conv3d(video, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=(t, p, p))
        x = x.flatten(2).transpose(1, 2) + sinusoid_table(self.tokens, c["dim"])
        kept = []
        for i in range(c["depth"]):
            b = f"blocks.{i}."
            norm = lambda z, n: F.layer_norm(z, (c["dim"],), w[b + n + ".weight"], w[b + n + ".bias"], self.eps)
            x = x + self._attention(norm(x, "norm1"), i)
            hidden = F.gelu(F.linear(norm(x, "norm2"), w[b + "mlp.fc1.weight"], w[b + "mlp.fc1.bias"]))
            mlp = F.linear(hidden, w[b + "mlp.fc2.weight"], w[b + "mlp.fc2.bias"])
            score = (mlp - x).norm(dim=-1)  # the paper's D(F(x), x), F = the MLP branch, L2
            x = x + mlp
            if drops.get(i, 0.0) > 0.0:
                n = x.shape[1]
                keep = n - math.floor(drops[i] * n)
                # Highest scores first (a stable sort: a tie goes to the lower
                # index); the kept rows stay in ascending order.
                idx = torch.stack([torch.tensor(sorted(sorted(range(n), key=lambda j: -float(s[j]))[:keep]))
                                   for s in score])
                kept.append(idx)
                x = torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))
        pooled = F.layer_norm(x.mean(1), (c["dim"],), w["fc_norm.weight"], w["fc_norm.bias"], self.eps)
        return F.linear(pooled, w["head.weight"], w["head.bias"]), kept
