"""One trainer for both networks.

* :mod:`.trainer` - :class:`Trainer`: device, precision, schedule, augmentation on the device,
  validation, best/last checkpoints, resume, training log, cancel;
* :mod:`.schedule` - recipes ('paper', 'fast') and a learning-rate schedule with JSON state;
* :mod:`.augment` - batch augmentation on tensors (flips, rotations, translations, scaling);
* :mod:`.batchnorm` - precise batch-norm statistics after training;
* :mod:`.distributed` - DistributedDataParallel when launched by ``torchrun``.
"""
