import dask.array as da
import joblib
from dask.distributed import Client, LocalCluster
from dask_ml.wrappers import Incremental, ParallelPostFit
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from fastbp import MLPClassifier


def quiet():
    """Short max_iter on purpose: silence scikit-learn's ConvergenceWarning (here and on each worker)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)


if __name__ == "__main__":
    quiet()
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    # Compile fastbp's kernels once here, before the workers start: they then only
    # read Numba's on-disk cache (several processes writing it at once can crash).
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=1).fit(X[:50], y[:50]).predict(X[:5])

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1") as cluster, Client(cluster) as client:
        client.run(quiet)
        Xd, yd = da.from_array(X, chunks=300), da.from_array(y, chunks=300)

        # Stream partial_fit over the blocks of a Dask array (3 passes).
        inc = Incremental(MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0))
        for _ in range(3):
            inc.partial_fit(Xd, yd, classes=list(range(10)))
        print("Incremental accuracy:", inc.score(Xd, yd))

        # Predict over a Dask array, block by block, on the workers.
        clf = ParallelPostFit(MLPClassifier(hidden_layer_sizes=(32,), max_iter=50, random_state=0))
        clf.fit(X, y)
        print("ParallelPostFit predictions:", clf.predict(Xd)[:10].compute())

        # A scikit-learn search with its fits spread over the cluster.
        search = GridSearchCV(
            MLPClassifier(max_iter=50, random_state=0),
            {"hidden_layer_sizes": [(16,), (32,)], "alpha": [1e-4, 1e-2]},
            cv=3,
        )
        with joblib.parallel_backend("dask"):
            search.fit(X, y)
        print("best:", search.best_params_, round(search.best_score_, 3))
