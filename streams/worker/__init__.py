"""The routing worker: a Faust app whose one agent takes batches, routes them and acknowledges
them in order once written."""
