"""One frame -> ranked tiles: inference runtimes, the strategy (embed + search), the inference engine on its
own thread and its newest-frame-wins queue."""
