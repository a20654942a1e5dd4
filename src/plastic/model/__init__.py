"""What plastic knows about models: one backend per family (timm, torchvision, transformers) behind one
interface, building a checkpoint's model, its structure (stages, classifier, norms) and its init values."""
