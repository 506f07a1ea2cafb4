"""The run folder: one writer (lock), what it wrote (manifest), atomic epoch commits, input
fingerprints for --resume, results.json and the folders other tools write into."""
