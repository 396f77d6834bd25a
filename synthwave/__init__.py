"""ai-synthwave: videos -> sharded TFRecords -> DCGAN, orchestrated by Prefect."""
