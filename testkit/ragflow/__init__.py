"""RAGFlow side: the RAGFlow API double (also served by the lab stand-in) and RAGFlow's MySQL schema."""
