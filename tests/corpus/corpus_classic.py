"""Classic training code as makemore, the zero-to-hero lectures and pytorch/examples write it, at
toy sizes: plain-class layers, recurrent nets with hidden states, CNNs, a VAE, a DCGAN, a ResNet
block, Conv1d text models, model EMA. Correct code: detect() must stay silent.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

# --- the zero-to-hero lectures: plain Python classes, the fixed BatchNorm --------------------


class Linear:
    def __init__(self, fan_in, fan_out, bias=True):
        self.weight = torch.randn((fan_in, fan_out)) / fan_in**0.5
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x):
        self.out = x @ self.weight
        if self.bias is not None:
            self.out += self.bias
        return self.out

    def parameters(self):
        return [self.weight] + ([] if self.bias is None else [self.bias])


class BatchNorm1d:
    def __init__(self, dim, eps=1e-5, momentum=0.1):
        self.eps, self.momentum, self.training = eps, momentum, True
        self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
        self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)

    def __call__(self, x):
        if self.training:
            if x.ndim == 2:
                dim = 0
            elif x.ndim == 3:
                dim = (0, 1)
            xmean = x.mean(dim, keepdim=True)
            xvar = x.var(dim, keepdim=True)
        else:
            xmean, xvar = self.running_mean, self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)
        self.out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]


class Tanh:
    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out

    def parameters(self):
        return []


class Embedding:
    def __init__(self, num_embeddings, embedding_dim):
        self.weight = torch.randn((num_embeddings, embedding_dim))

    def __call__(self, IX):
        self.out = self.weight[IX]
        return self.out

    def parameters(self):
        return [self.weight]


class FlattenConsecutive:
    def __init__(self, n):
        self.n = n

    def __call__(self, x):
        B, T, C = x.shape
        x = x.view(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        self.out = x
        return self.out

    def parameters(self):
        return []


class Sequential:
    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        self.out = x
        return self.out

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


def lecture_wavenet():
    torch.manual_seed(42)
    n_embd, n_hidden = 10, 68
    model = Sequential([
        Embedding(27, n_embd),
        FlattenConsecutive(2), Linear(n_embd * 2, n_hidden, bias=False), BatchNorm1d(n_hidden),
        Tanh(),
        FlattenConsecutive(2), Linear(n_hidden * 2, n_hidden, bias=False), BatchNorm1d(n_hidden),
        Tanh(),
        FlattenConsecutive(2), Linear(n_hidden * 2, n_hidden, bias=False), BatchNorm1d(n_hidden),
        Tanh(),
        Linear(n_hidden, 27),
    ])
    with torch.no_grad():
        model.layers[-1].weight *= 0.1
    parameters = model.parameters()
    for p in parameters:
        p.requires_grad = True
    Xtr, Ytr = torch.randint(0, 27, (200, 8)), torch.randint(0, 27, (200,))
    lossi = []
    for i in range(3):
        ix = torch.randint(0, Xtr.shape[0], (32,))
        Xb, Yb = Xtr[ix], Ytr[ix]
        logits = model(Xb)
        loss = F.cross_entropy(logits, Yb)
        for p in parameters:
            p.grad = None
        loss.backward()
        lr = 0.1 if i < 150000 else 0.01
        for p in parameters:
            p.data += -lr * p.grad
        lossi.append(loss.log10().item())
    torch.tensor(lossi).view(-1, 1).mean(1)
    for layer in model.layers:
        layer.training = False
    with torch.no_grad():
        F.cross_entropy(model(Xtr), Ytr).item()
        for _ in range(2):
            out, context = [], [0] * 8
            while True:
                logits = model(torch.tensor([context]))
                probs = F.softmax(logits, dim=1)
                ix = torch.multinomial(probs, num_samples=1).item()
                context = [*context[1:], ix]
                out.append(ix)
                if ix == 0 or len(out) > 8:
                    break


def makemore_bigram_and_mlp():
    N = torch.randint(0, 20, (27, 27), dtype=torch.int32)
    P = (N + 1).float()
    P /= P.sum(1, keepdim=True)
    g = torch.Generator().manual_seed(2147483647)
    ix = 0
    for _ in range(5):
        ix = torch.multinomial(P[ix], num_samples=1, replacement=True, generator=g).item()
    xs, ys = torch.randint(0, 27, (50,)), torch.randint(0, 27, (50,))
    W = torch.randn((27, 27), generator=g, requires_grad=True)
    for _ in range(2):
        xenc = F.one_hot(xs, num_classes=27).float()
        logits = xenc @ W  # square, but W is the user's own (in, out) matrix
        counts = logits.exp()
        probs = counts / counts.sum(1, keepdims=True)
        loss = -probs[torch.arange(50), ys].log().mean() + 0.01 * (W**2).mean()
        W.grad = None
        loss.backward()
        W.data += -50 * W.grad
    # part 2-4: the MLP with hand-written batchnorm and a manual backward pass
    C = torch.randn((27, 10), generator=g)
    W1, b1 = torch.randn((30, 64), generator=g) * 0.2, torch.randn(64, generator=g) * 0.1
    W2, b2 = torch.randn((64, 27), generator=g) * 0.1, torch.randn(27, generator=g) * 0.1
    bngain, bnbias = torch.ones((1, 64)), torch.zeros((1, 64))
    bnmean_running, bnstd_running = torch.zeros((1, 64)), torch.ones((1, 64))
    X, Y = torch.randint(0, 27, (32, 3)), torch.randint(0, 27, (32,))
    emb = C[X]
    embcat = emb.view(emb.shape[0], -1)
    hprebn = embcat @ W1 + b1
    bnmeani = hprebn.mean(0, keepdim=True)
    bnstdi = hprebn.std(0, keepdim=True)
    hpreact = bngain * (hprebn - bnmeani) / bnstdi + bnbias
    with torch.no_grad():
        bnmean_running = 0.999 * bnmean_running + 0.001 * bnmeani
        bnstd_running = 0.999 * bnstd_running + 0.001 * bnstdi
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    dlogits = F.softmax(logits, 1)
    dlogits[range(32), Y] -= 1
    dlogits /= 32
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - h**2) * dh
    dbngain = (bnmeani * dhpreact).sum(0, keepdim=True)
    assert dW2.shape == W2.shape and db2.shape == b2.shape and dbngain.shape == bngain.shape


# --- makemore's RNN and GRU cells --------------------------------------------------------------


class RNNCell(nn.Module):
    def __init__(self, n_embd, n_embd2):
        super().__init__()
        self.xh_to_h = nn.Linear(n_embd + n_embd2, n_embd2)

    def forward(self, xt, hprev):
        return F.tanh(self.xh_to_h(torch.cat([xt, hprev], dim=1)))


class GRUCell(nn.Module):
    def __init__(self, n_embd, n_embd2):
        super().__init__()
        self.xh_to_z = nn.Linear(n_embd + n_embd2, n_embd2)
        self.xh_to_r = nn.Linear(n_embd + n_embd2, n_embd2)
        self.xh_to_hbar = nn.Linear(n_embd + n_embd2, n_embd2)

    def forward(self, xt, hprev):
        xh = torch.cat([xt, hprev], dim=1)
        r = F.sigmoid(self.xh_to_r(xh))
        hprev_reset = r * hprev
        hbar = F.tanh(self.xh_to_hbar(torch.cat([xt, hprev_reset], dim=1)))
        z = F.sigmoid(self.xh_to_z(xh))
        return (1 - z) * hprev + z * hbar


class MakemoreRNN(nn.Module):
    def __init__(self, cell_type, vocab_size=27, block_size=8, n_embd=16, n_embd2=16):
        super().__init__()
        self.block_size = block_size
        self.start = nn.Parameter(torch.zeros(1, n_embd2))  # the starting hidden state
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.cell = RNNCell(n_embd, n_embd2) if cell_type == "rnn" else GRUCell(n_embd, n_embd2)
        self.lm_head = nn.Linear(n_embd2, vocab_size)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        emb = self.wte(idx)  # (b, t, n_embd)
        hprev = self.start.expand((b, -1))
        hiddens = []
        for i in range(t):
            xt = emb[:, i, :]  # (b, n_embd)
            ht = self.cell(xt, hprev)  # (b, n_embd2)
            hprev = ht
            hiddens.append(ht)
        hidden = torch.stack(hiddens, 1)  # (b, t, n_embd2)
        logits = self.lm_head(hidden)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                   ignore_index=-1)
        return logits, loss


def makemore_rnn_and_gru():
    for cell in ("rnn", "gru"):
        torch.manual_seed(0)
        model = MakemoreRNN(cell)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01, betas=(0.9, 0.99),
                                eps=1e-8)
        X, Y = torch.randint(0, 27, (16, 8)), torch.randint(0, 27, (16, 8))
        Y[:, -2:] = -1  # makemore masks the padding with -1
        for _ in range(2):
            _, loss = model(X, Y)
            model.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


# --- pytorch/examples --------------------------------------------------------------------------


class MnistNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1)
        self.conv2 = nn.Conv2d(8, 16, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(16 * 5 * 5, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)


def pytorch_mnist():
    torch.manual_seed(1)
    model = MnistNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    data, target = torch.randn(8, 1, 14, 14), torch.randint(0, 10, (8,))
    for _ in range(2):
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    with torch.no_grad():
        output = model(data)
        F.nll_loss(output, target, reduction="sum").item()
        pred = output.argmax(dim=1, keepdim=True)
        pred.eq(target.view_as(pred)).sum().item()


class RNNModel(nn.Module):
    """pytorch/examples word_language_model: (seq, batch) layout, hidden carried across batches."""

    def __init__(self, rnn_type, ntoken=50, ninp=16, nhid=16, nlayers=2, tie_weights=True):
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=0.2)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def pytorch_word_language_model():
    for rnn_type in ("LSTM", "GRU"):
        torch.manual_seed(0)
        model = RNNModel(rnn_type)
        data = torch.randint(0, 50, (200,))
        bsz, bptt = 8, 8  # seq == batch: the layouts cannot be told apart by shape
        data = data[: data.size(0) // bsz * bsz].view(bsz, -1).t().contiguous()
        hidden = model.init_hidden(bsz)
        for i in range(0, 2 * bptt, bptt):
            source, target = data[i:i + bptt], data[i + 1:i + 1 + bptt].reshape(-1)
            hidden = repackage_hidden(hidden)
            model.zero_grad()
            output, hidden = model(source, hidden)
            loss = F.nll_loss(output, target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-20)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(64, 32), nn.Linear(32, 8), nn.Linear(32, 8)
        self.fc3, self.fc4 = nn.Linear(8, 32), nn.Linear(32, 64)

    def forward(self, x):
        h1 = F.relu(self.fc1(x.view(-1, 64)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        std = torch.exp(0.5 * logvar)
        z = mu + torch.randn_like(std) * std
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def pytorch_vae():
    torch.manual_seed(0)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.rand(8, 1, 8, 8)
    for _ in range(2):
        recon, mu, logvar = model(data)
        bce = F.binary_cross_entropy(recon, data.view(-1, 64), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        opt.zero_grad()
        (bce + kld).backward()
        opt.step()


def pytorch_dcgan():
    torch.manual_seed(0)
    nz, ngf, ndf = 8, 4, 4
    netG = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, 3, 4, 2, 1, bias=False), nn.Tanh())
    netD = nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    criterion = nn.BCELoss()
    optD, optG = (torch.optim.Adam(n.parameters(), lr=2e-4, betas=(0.5, 0.999))
                  for n in (netD, netG))
    real = torch.randn(4, 3, 8, 8)
    for _ in range(2):
        netD.zero_grad()
        label = torch.full((4,), 1.0)
        errD_real = criterion(netD(real).view(-1), label)
        errD_real.backward()
        fake = netG(torch.randn(4, nz, 1, 1))
        label.fill_(0.0)
        errD_fake = criterion(netD(fake.detach()).view(-1), label)
        errD_fake.backward()
        optD.step()
        netG.zero_grad()
        label.fill_(1.0)
        criterion(netD(fake).view(-1), label).backward()
        optG.step()


class BasicBlock(nn.Module):
    """torchvision's ResNet block."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


def torchvision_resnet_blocks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), BasicBlock(8, 8), BasicBlock(8, 16, 2),
                        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(16, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    for _ in range(2):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        net(x[:1])


# --- Conv1d text models and the lecture's convolutional form ----------------------------------


class TextCNN(nn.Module):
    def __init__(self, vocab=50, dim=16, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.convs = nn.ModuleList([nn.Conv1d(dim, dim, k, padding=k // 2) for k in (3, 5)])
        self.bn = nn.BatchNorm1d(dim)
        self.fc = nn.Linear(2 * dim, classes)

    def forward(self, idx):
        x = self.emb(idx).transpose(1, 2)  # (B, C, T), the layout Conv1d wants
        pooled = [F.relu(self.bn(conv(x))).amax(dim=2) for conv in self.convs]
        return self.fc(torch.cat(pooled, dim=1))


class CausalConvNet(nn.Module):
    """WaveNet/TCN style: dilated causal Conv1d stack on (B, C, T) input, T == C."""

    def __init__(self, channels=16):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(channels, channels, 2, dilation=d)
                                    for d in (1, 2, 4)])

    def forward(self, x):
        for conv in self.convs:
            pad = conv.dilation[0]
            x = torch.tanh(conv(F.pad(x, (pad, 0)))) + x
        return x


def conv1d_text_models():
    torch.manual_seed(0)
    model = TextCNN()
    opt = torch.optim.Adam(model.parameters())
    idx, y = torch.randint(0, 50, (8, 16)), torch.randint(0, 3, (8,))  # T == C == 16
    for _ in range(2):
        loss = F.cross_entropy(model(idx), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tcn = CausalConvNet()
    tcn(nn.Embedding(50, 16)(idx).permute(0, 2, 1)).mean().backward()


# --- seq2seq with batch_first GRUs, model EMA, running averages -------------------------------


def seq2seq_gru():
    torch.manual_seed(0)
    enc, dec = nn.GRU(16, 32, batch_first=True), nn.GRU(16, 32, batch_first=True)
    emb, out = nn.Embedding(20, 16), nn.Linear(32, 20)
    src, tgt = torch.randint(0, 20, (4, 6)), torch.randint(0, 20, (4, 5))
    _, h = enc(emb(src))  # h: (1, B, 32)
    outputs, _ = dec(emb(tgt[:, :-1]), h)
    loss = F.cross_entropy(out(outputs).reshape(-1, 20), tgt[:, 1:].reshape(-1))
    loss.backward()
    lstm = nn.LSTM(16, 32, num_layers=2, bidirectional=True, batch_first=True)
    h0 = torch.zeros(2 * 2, 4, 32)
    lstm(emb(src), (h0, h0.clone()))
    packed = nn.utils.rnn.pack_padded_sequence(emb(src), torch.tensor([6, 5, 3, 2]),
                                               batch_first=True)
    nn.utils.rnn.pad_packed_sequence(enc(packed)[0], batch_first=True)


class EMA:
    """A model's exponential moving average, kept in a plain object as many repositories do."""

    def __init__(self, model, decay=0.99):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.avg_loss = None
        self.loss_ema = torch.zeros(())

    @torch.no_grad()
    def update(self, model, loss):
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k] = self.decay * self.shadow[k] + (1 - self.decay) * v
        self.avg_loss = loss if self.avg_loss is None else 0.9 * self.avg_loss + 0.1 * loss
        self.loss_ema = 0.9 * self.loss_ema + 0.1 * loss


def model_ema_and_running_averages():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    ema = EMA(model)
    ema_model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model, loss.detach())
        with torch.no_grad():
            for pe, p in zip(ema_model.parameters(), model.parameters(), strict=True):
                pe.mul_(0.99).add_(p, alpha=0.01)
    swa = torch.optim.swa_utils.AveragedModel(model)
    swa.update_parameters(model)


CASES = [lecture_wavenet, makemore_bigram_and_mlp, makemore_rnn_and_gru, pytorch_mnist,
         pytorch_word_language_model, pytorch_vae, pytorch_dcgan, torchvision_resnet_blocks,
         conv1d_text_models, seq2seq_gru, model_ema_and_running_averages]
