"""Algorithm 2: face-recognition embeddings, per-identity centroids, FAISS duplicates, merging."""
