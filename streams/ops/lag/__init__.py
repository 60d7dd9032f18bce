"""Consumer lag: sampled off the cluster, judged over a sliding window, shown and exported."""
