"""Writes the small .mat fixtures of Tests/Fixtures/mat (MatFileTests): python3 scripts/make_mat_fixtures.py"""
import os
import numpy as np, scipy.io as sio, scipy.sparse as sp

out = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "mat")
os.makedirs(out, exist_ok=True)
s = {'name': 'clip', 'size': np.array([[240, 320]], dtype=np.int16), 'w': np.float32(0.5)}
data = {'a': np.arange(24, dtype=np.float64).reshape(2, 3, 4), 'i16': np.array([[-3, 7], [100, -200]], dtype=np.int16),
        'u8': np.array([[1, 2, 3]], dtype=np.uint8), 'f32': np.array([[1.5, -2.25]], dtype=np.float32),
        'flag': np.array([[True, False]]), 's': s, 'c': np.array([[np.array([[1.0]]), 'x']], dtype=object), 'txt': 'hello'}
sio.savemat(os.path.join(out, 'types_compressed.mat'), data, do_compression=True)
sio.savemat(os.path.join(out, 'types_plain.mat'), data, do_compression=False)
sio.savemat(os.path.join(out, 'sparse.mat'), {'sp': sp.csc_matrix(np.eye(3))})
