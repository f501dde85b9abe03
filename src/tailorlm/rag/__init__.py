"""Retrieval, the RAG rung: structure-aware chunks, local embeddings, a hybrid LanceDB index, citations,
retrieval eval."""
