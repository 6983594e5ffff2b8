"""Writers (atomic, streaming) and readers of the files the project produces and consumes."""
